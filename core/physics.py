"""The pattern cascade: a car's battery moved forward through its schedule, segment by segment.

Pure functions, no database. A walk starts from a known level (a reading) and applies, in time
order, parked gaps (slow idle drain, or charging with a taper above 80 % when plugged in) and
trips (drain per hour of the renter and car). Whether a car is left plugged in after a future
trip is unknown, so that gap is a mixture of "charging" and "idle" weighted by the renter's habit.
Uncertainty is carried as a variance: each segment maps the incoming variance through the
segment's sensitivity to its starting level and adds the variance from its own rate's spread.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

TAPER_START = 80.0
FULL = 100.0  # the ceiling of a car that never showed a charge limit
Z_95 = 1.959964
BASE_STD = 2.0  # reading noise and what the physics never sees, in battery points
MIN_HOURS = 1e-6
# What a car with no history of a rate is assumed to do (the fleet prior's cold-start defaults, and the gap and
# trip models' physics baseline): a mid-size EV (about 55 kWh) parked at 0.15 %/h, charging on 7 kW at about
# 12 %/h, driven in town at 9 %/h.
DEFAULT_IDLE_DRAIN = 0.15
DEFAULT_CHARGE = 12.0
DEFAULT_DRIVE = 9.0
# The same car's drain per km when it has never reported its mileage: about 17.5 kWh/100 km on 55 kWh, with a
# spread that covers the simulator's cars (14 to 21 kWh/100 km) and a heavy or light foot.
DEFAULT_DRIVE_PER_KM = 0.32
DEFAULT_DRIVE_PER_KM_STD = 0.08


@dataclass(frozen=True)
class Rates:
    """Effective per-car rates (already shrunk towards the fleet), in battery points per hour."""

    idle_drain: float
    idle_std: float
    charge: float
    charge_std: float
    drive: float
    drive_std: float
    plug_probability: float
    ceiling: float = FULL  # where its charging stops: a charge limit the car has shown, else full


@dataclass(frozen=True)
class Trip:
    """A booking on the car's schedule: the car is away and driven from start to end."""

    booking_id: str
    start: datetime
    end: datetime
    drive: float
    drive_std: float
    plug_probability: float  # chance the renter leaves it plugged in on return
    user_id: str = ""


@dataclass(frozen=True)
class State:
    level: float
    at: datetime
    variance: float = 0.0
    charging: bool | None = None  # plugged in at `at`, when known


@dataclass
class Checkpoint:
    """The predicted level when a target booking starts, with the steps since the previous checkpoint."""

    booking_id: str
    at: datetime
    level: float
    std: float
    steps: list[dict] = field(default_factory=list)
    trips_before: int = 0
    interval: tuple[float, float] | None = None  # set when a model gives an asymmetric interval

    @property
    def lower(self) -> float:
        if self.interval is not None:
            return max(0.0, self.interval[0])
        return max(0.0, self.level - Z_95 * self.std)

    @property
    def upper(self) -> float:
        if self.interval is not None:
            return min(100.0, self.interval[1])
        return min(100.0, self.level + Z_95 * self.std)


def clamp(level: float) -> float:
    return min(100.0, max(0.0, level))


def charge_level(level: float, rate: float, hours: float, ceiling: float = FULL) -> float:
    """Level after charging: linear at `rate` up to 80 %, then exponential approach to 100 %, stopping at the
    car's charge `ceiling` (its charge limit). A car plugged in at or above its ceiling keeps its level."""
    if level >= ceiling:
        return level
    rate = max(rate, 0.0)
    start = level
    if level < TAPER_START:
        to_taper = (TAPER_START - level) / rate if rate > 0 else math.inf
        if hours <= to_taper:
            return min(level + rate * hours, ceiling)
        hours -= to_taper
        level = TAPER_START
    after = 100.0 - (100.0 - level) * math.exp(-rate * hours / (100.0 - TAPER_START))
    return max(min(after, ceiling), start)


def charge_hours(level: float, target: float, rate: float, ceiling: float = FULL) -> float:
    """Hours on the charger to go from `level` to `target`: the inverse of `charge_level` (linear to 80 %, then the
    taper). `math.inf` when the target cannot be reached: above the car's ceiling, or full (the taper only
    approaches 100 %), or with no charging rate."""
    if target <= level:
        return 0.0
    if rate <= 0.0 or target > ceiling or target >= 100.0:
        return math.inf
    hours = 0.0
    if level < TAPER_START:
        if target <= TAPER_START:
            return (target - level) / rate
        hours = (TAPER_START - level) / rate
        level = TAPER_START
    return hours + (100.0 - TAPER_START) / rate * math.log((100.0 - level) / (100.0 - target))


def gap_change(level: float, hours: float, *, charging: bool, charge: float, idle: float, ceiling: float) -> float:
    """The physics of a parked gap, in points: charging up to the ceiling, or idling down towards empty."""
    if charging:
        return charge_level(level, charge, hours, ceiling) - level
    return idle_level(level, idle, hours) - level


def trip_change(level: float, hours: float, *, drive: float) -> float:
    """The physics of a trip, in points: drained at `drive` points per hour, never below empty."""
    return idle_level(level, drive, hours) - level


def idle_level(level: float, rate: float, hours: float) -> float:
    return clamp(level - max(rate, 0.0) * hours)


def _propagate(fn, level: float, variance: float, rate: float, rate_std: float, hours: float):
    """Mean and variance after `fn(level, rate, hours)`, by finite-difference sensitivities."""
    after = fn(level, rate, hours)
    eps = 0.5
    slope = (fn(min(level + eps, 100.0), rate, hours) - fn(max(level - eps, 0.0), rate, hours)) / (
        min(level + eps, 100.0) - max(level - eps, 0.0) or 1.0
    )
    rate_effect = fn(level, rate + rate_std, hours) - after
    return after, slope * slope * variance + rate_effect * rate_effect


def parked(level: float, variance: float, hours: float, p_plugged: float, rates: Rates):
    """A parked gap: charging (up to the car's ceiling) with probability `p_plugged`, otherwise idling."""
    idle_after, idle_var = _propagate(idle_level, level, variance, rates.idle_drain, rates.idle_std, hours)
    if p_plugged <= 0.0:
        return idle_after, idle_var
    ceiling = rates.ceiling

    def charged(start: float, rate: float, gap_hours: float) -> float:
        return charge_level(start, rate, gap_hours, ceiling)

    charge_after, charge_var = _propagate(charged, level, variance, rates.charge, rates.charge_std, hours)
    if p_plugged >= 1.0:
        return charge_after, charge_var
    p = p_plugged
    mean = p * charge_after + (1 - p) * idle_after
    var = p * charge_var + (1 - p) * idle_var + p * (1 - p) * (charge_after - idle_after) ** 2
    return mean, var


def driven(level: float, variance: float, hours: float, trip: Trip):
    return _propagate(idle_level, level, variance, trip.drive, trip.drive_std, hours)


def _hours(start: datetime, end: datetime) -> float:
    return max((end - start).total_seconds() / 3600.0, 0.0)


def _step(kind: str, start: datetime, end: datetime, before: float, after: float, **extra) -> dict:
    return {
        "type": kind,
        "starts_at": start.isoformat().replace("+00:00", "Z"),
        "ends_at": end.isoformat().replace("+00:00", "Z"),
        "duration_hours": round(_hours(start, end), 3),
        "battery_change": round(after - before, 2),
        "battery_after": round(after, 2),
        **extra,
    }


def walk(
    state: State,
    trips: Sequence[Trip],
    targets: Sequence[tuple[str, datetime]],
    rates: Rates,
    *,
    with_steps: bool = True,
    trace: list[tuple] | None = None,
) -> list[Checkpoint]:
    """Predict the level at each target time, walking once through the trips in time order.

    `trips` and `targets` must be sorted by start. A target's own trip may be in `trips` (the
    cascade: the booking is predicted at its start, then driven); a trip that started before
    `state.at` is driven from `state.at` (the car is out now). Targets before `state.at` get
    the state's level.

    Each checkpoint carries the steps since the previous one (from the state for the first), so
    a cascade of n bookings stores O(n) steps, not O(n^2); the full path to a booking is the
    concatenation of the steps of the checkpoints up to it.

    `trace`, when given, receives the walk's plan in order for a model to re-price:
    ("gap", start, end, level_before, p_plugged, known_charging), ("trip", start, end,
    level_before, trip) and ("target", index).
    """
    level, variance, cursor = clamp(state.level), state.variance, state.at
    p_plugged = rates.plug_probability if state.charging is None else float(state.charging)
    charging_known = state.charging is not None
    steps: list[dict] = []
    checkpoints: list[Checkpoint] = []
    trips_done = 0
    events = sorted(
        [(t.start, 1, i) for i, t in enumerate(trips)] + [(at, 0, i) for i, (_, at) in enumerate(targets)],
        key=lambda e: (e[0], e[1]),
    )
    for at, kind, index in events:
        if at > cursor:
            before = level
            if trace is not None:
                trace.append(("gap", cursor, at, level, p_plugged, charging_known))
            level, variance = parked(level, variance, _hours(cursor, at), p_plugged, rates)
            if with_steps:
                steps.append(_step("idle", cursor, at, before, level, charging_probability=round(p_plugged, 3)))
            cursor = at
        if kind == 0:
            if trace is not None:
                trace.append(("target", index))
            booking_id, _ = targets[index]
            checkpoints.append(
                Checkpoint(
                    booking_id=booking_id,
                    at=at,
                    level=level,
                    std=math.sqrt(variance + BASE_STD * BASE_STD),
                    steps=steps,
                    trips_before=trips_done,
                )
            )
            steps = []
            continue
        trip = trips[index]
        if trip.end <= cursor:
            continue
        before = level
        if trace is not None:
            trace.append(("trip", cursor, trip.end, level, trip))
        level, variance = driven(level, variance, _hours(cursor, trip.end), trip)
        if with_steps:
            steps.append(_step("booking", cursor, trip.end, before, level, booking_id=trip.booking_id))
        cursor = trip.end
        p_plugged, charging_known = trip.plug_probability, False
        trips_done += 1
    return checkpoints
