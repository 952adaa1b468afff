"""Exponential moving averages, as the seed describes: new = alpha * observed + (1 - alpha) * old.

The spread is an exponentially weighted variance updated in the same step, so a car whose
behaviour changes gets both a new average and a wider interval.
"""

from __future__ import annotations

from core.physics import DEFAULT_CHARGE, FULL, charge_hours, charge_level

ALPHA = 0.3
# A slow EMA of the same parked gaps (after a plain mean of the first 20) keeps a car's long-run idle drain,
# so a jump of the fast one against it (a failing battery, a telematics unit keeping the car awake) stands out.
BASELINE_ALPHA = 0.05

# The thresholds both learners of a parked gap use (the pattern EMA in learning.services, the model features in
# core.features): a gap shorter than MIN_GAP_HOURS says nothing about a rate, and a parked, unplugged car that
# gained FOUND_CHARGED_GAIN points was charged by someone (staff, an unreported plug), so it says nothing about
# its idle drain.
MIN_GAP_HOURS = 0.25
FOUND_CHARGED_GAIN = 3.0


def ema_update(average: float | None, variance: float, observed: float, alpha: float = ALPHA) -> tuple[float, float]:
    """Return the new (average, variance); the first observation becomes the average."""
    if average is None:
        return observed, variance
    diff = observed - average
    return average + alpha * diff, (1 - alpha) * (variance + alpha * diff * diff)


def shrink(value: float | None, count: int, prior: float, strength: float) -> float:
    """Blend a car's own estimate with the fleet's while it has few observations."""
    if value is None or count <= 0:
        return prior
    return (count * value + strength * prior) / (count + strength)


def charging_rate_from_gap(
    start_level: float, end_level: float, hours: float, ceiling: float | None = None
) -> float | None:
    """The charging rate (points per hour below the taper) that explains a plugged-in gap.

    Inverts `charge_level` with `core.physics.charge_hours` (hours on the charger scale as 1 / rate), up to
    MAX_CHARGE_RATE. None when the gap says nothing about the rate: the car reached (nearly) full or its learned
    charge `ceiling`, so the rate is only bounded from below, or it lost charge.
    """
    if hours <= 0 or end_level >= _stop(ceiling) or end_level <= start_level:
        return None
    return min(_rate_reaching(start_level, end_level, hours), MAX_CHARGE_RATE)


MAX_CHARGE_RATE = 200.0  # points an hour: the most a gap is read as (the bisection this replaced searched to it)


def _stop(ceiling: float | None) -> float:
    """Where a charge counts as stopped at the car's stop: a point under its learned ceiling, or 99 (full)."""
    return 99.0 if ceiling is None else min(99.0, ceiling - CEILING_TOLERANCE)


def _rate_reaching(start_level: float, level: float, hours: float) -> float:
    """The charging rate that takes a car from `start_level` to `level` in `hours`, by the physics."""
    return charge_hours(start_level, level, 1.0) / hours


# The charge ceiling (a charge limit set in the car or its charger: 80 or 90 % is common). A charging gap whose
# level stopped at least CEILING_SHORTFALL points below where the car's charge rate would have taken it had
# flattened; two such gaps in a row that stopped within CEILING_TOLERANCE points of each other (from other
# starting levels or durations) show a ceiling. One alone could be a slower charge than learned (a cold battery,
# a new car still on the fleet's rate); a slow charger's stops wander with each gap's length, a limit's do not.
# Chosen by reasoning about what a limit looks like (the simulator's limits stop exactly at them), not tuned.
CEILING_TOLERANCE = 1.0
CEILING_SHORTFALL = 5.0
CEILING_MIN = 50.0  # a lower stop is a charger that gave up, not a limit anyone sets


def charge_ceiling_update(
    ceiling: float | None,
    candidate: float | None,
    *,
    start_level: float,
    end_level: float,
    hours: float,
    rate: float,
) -> tuple[float | None, float | None]:
    """The car's (ceiling, candidate) after a gap left charging; `rate` is its charge rate as learned so far.

    None for the ceiling means none shown: the physics charges it up to FULL. A gap that ends full, or
    above the ceiling, shows the ceiling is not (or no longer) there.
    """
    if hours < MIN_GAP_HOURS or end_level <= start_level:
        return ceiling, candidate  # held at or above its limit, or unplugged early: nothing about a ceiling
    if end_level >= 99.0:
        return None, None
    if ceiling is not None and end_level > ceiling + CEILING_TOLERANCE:
        ceiling = None
    if candidate is not None and end_level > candidate + CEILING_TOLERANCE:
        candidate = None
    shortfall = charge_level(start_level, rate, hours, FULL) - end_level
    if end_level < CEILING_MIN or shortfall < CEILING_SHORTFALL:  # it did not flatten
        return ceiling, candidate
    if ceiling is not None and abs(end_level - ceiling) <= CEILING_TOLERANCE:
        return ceiling + ALPHA * (end_level - ceiling), end_level
    if candidate is not None and abs(end_level - candidate) <= CEILING_TOLERANCE:
        return (candidate + end_level) / 2, end_level
    return ceiling, end_level


def charging_gap_learned(
    ceiling: float | None,
    candidate: float | None,
    *,
    start_level: float,
    end_level: float,
    hours: float,
    rate: float | None,
) -> tuple[float | None, float | None, float | None]:
    """What a gap left charging teaches: the car's (ceiling, candidate), then the charging rate it shows (None when
    it shows none). `rate` is the car's rate as learned so far (None: never learned, the default's).

    The ceiling first: a gap that stopped at the car's limit says only that the rate is at least so high, and read
    as a rate it would teach a charger slower than the car's. Both learners of a parked gap (the pattern EMA in
    learning.services, the model features in core.features) learn a charging gap here, so they agree on it.

    Such a gap still teaches that lower bound (`censored_charge_rate`): before a limit is confirmed (two gaps
    stopping at it), the gaps that stopped there were read as rates, and a fast charger's learned rate stayed a
    fraction of its own, since every later gap ended at the limit and taught nothing.
    """
    ceiling, candidate = charge_ceiling_update(
        ceiling,
        candidate,
        start_level=start_level,
        end_level=end_level,
        hours=hours,
        rate=DEFAULT_CHARGE if rate is None else rate,
    )
    learned = charging_rate_from_gap(start_level, end_level, hours, ceiling)
    if learned is not None:
        return ceiling, candidate, learned
    return ceiling, candidate, censored_charge_rate(start_level, end_level, hours, ceiling, rate)


def censored_charge_rate(
    start_level: float, end_level: float, hours: float, ceiling: float | None, rate: float | None
) -> float | None:
    """What a gap that stopped at the car's stop (full, or its learned ceiling) teaches of its rate: the rate that
    reaches the stop within the gap, when that is above the car's rate as learned so far; None otherwise, as such a
    gap bounds the rate from below only.

    The bound is exact under the physics (`core.physics.charge_hours`: linear to the taper, then the approach to
    full), so it never exceeds the car's true rate; a short gap that ended at the stop bounds it tightly. A car with
    no rate learned yet keeps the default's until a charge shows its own: a bound taken as its first rate anchored
    the average below the true rates that followed (bench.worlds --seed 11, fast_chargers).
    """
    top = _stop(ceiling)
    if rate is None or hours < MIN_GAP_HOURS or end_level < top or top <= start_level:
        return None
    bound = _rate_reaching(start_level, top, hours)
    return bound if bound > rate else None
