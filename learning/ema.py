"""Exponential moving averages, as the seed describes: new = alpha * observed + (1 - alpha) * old.

The spread is an exponentially weighted variance updated in the same step, so a car whose
behaviour changes gets both a new average and a wider interval.
"""

from __future__ import annotations

from predictions.physics import charge_level

ALPHA = 0.3
# A slow EMA of the same parked gaps (after a plain mean of the first 20) keeps a car's long-run idle drain,
# so a jump of the fast one against it (a failing battery, a telematics unit keeping the car awake) stands out.
BASELINE_ALPHA = 0.05


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


def charging_rate_from_gap(start_level: float, end_level: float, hours: float) -> float | None:
    """The charging rate (points per hour below the taper) that explains a plugged-in gap.

    Inverts `charge_level` by bisection. None when the gap says nothing about the rate: the car
    reached (nearly) full, so the rate is only bounded from below, or it lost charge.
    """
    if hours <= 0 or end_level >= 99.0 or end_level <= start_level:
        return None
    low, high = 0.0, 200.0
    for _ in range(50):
        mid = (low + high) / 2
        if charge_level(start_level, mid, hours) < end_level:
            low = mid
        else:
            high = mid
    return (low + high) / 2
