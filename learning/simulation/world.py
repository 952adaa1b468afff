"""The simulated world's hidden physics: cars, renters, weather, and how a battery moves.

Every function is vectorised over Monte Carlo samples (numpy arrays of levels), so the same code
generates the one true trajectory (arrays of length 1) and the oracle's thousands of possible
futures. Times are hours since the simulation epoch (floats), converted to datetimes only when
events are emitted.

What the service never sees lives here: battery sizes, efficiencies, the station's charger
power, the cold's effect on idle drain and consumption, renters' distances and habits, and the
staff who recharge low cars without telling the platform.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

TAPER_START = 80.0
STEP_HOURS = 2.0  # weather is integrated in steps of at most this long
STAFF_THRESHOLD = 30.0  # a car returned below this and not plugged in may be recharged by staff
STAFF_PROBABILITY = 0.7
STAFF_DELAY_HOURS = (1.0, 10.0)
STAFF_TARGET = (85.0, 100.0)
TOPUP_BELOW = 15.0  # a renter about to fall below this may top up on the road
MIN_LEVEL = 3.0  # renters do not run a car flat: they return or charge before


@dataclass(frozen=True)
class Weather:
    """Outdoor temperature: seasonal and daily cycles plus a random offset for each day."""

    epoch_day_of_year: float
    day_offsets: np.ndarray  # degrees, one per simulated day (and some margin)

    def at(self, hours: float | np.ndarray) -> np.ndarray:
        hours = np.asarray(hours, dtype=float)
        day = np.clip((hours // 24).astype(int), 0, len(self.day_offsets) - 1)
        doy = self.epoch_day_of_year + hours / 24.0
        seasonal = 11.0 - 10.0 * np.cos(2 * math.pi * (doy - 20.0) / 365.25)
        hour_of_day = np.mod(hours, 24.0)
        daily = 4.0 * np.sin(2 * math.pi * (hour_of_day - 9.0) / 24.0)
        return seasonal + daily + self.day_offsets[day]


@dataclass(frozen=True)
class Car:
    car_id: str
    capacity_kwh: float
    kwh_per_km: float
    idle_pct_per_hour: float  # at mild temperatures
    cold_factor: float  # extra idle drain per 10 degrees below 12 C, as a share of the base
    charger_kw: float  # at its home station; 0 when the station has no charger
    telematics: bool  # reports its live level to the platform
    mean_gap_hours: float  # how busy it is

    @property
    def charge_pct_per_hour(self) -> float:
        return self.charger_kw * 0.92 / self.capacity_kwh * 100.0


@dataclass(frozen=True)
class Renter:
    user_id: str
    km_per_hour: float  # distance per booked hour
    style: float  # consumption multiplier (driving style)
    plug_probability: float  # leaves the car plugged in when the station has a charger
    topup_probability: float
    mean_duration_hours: float
    late_probability: float


def idle_rate(car: Car, temperature: np.ndarray) -> np.ndarray:
    """Points per hour lost while parked: more in the cold (heater, battery conditioning)."""
    cold = np.maximum(0.0, 12.0 - temperature) / 10.0
    return car.idle_pct_per_hour * (1.0 + car.cold_factor * cold)


def charge_rate(car: Car, temperature: np.ndarray) -> np.ndarray:
    """Points per hour gained below the taper; a cold battery accepts less."""
    return car.charge_pct_per_hour * np.where(temperature < 0.0, 0.8, 1.0)


def charge(levels: np.ndarray, rate: np.ndarray, hours: float) -> np.ndarray:
    """Linear at `rate` up to 80 %, then an exponential approach to 100 %."""
    rate = np.maximum(rate, 1e-9)
    to_taper = np.maximum(TAPER_START - levels, 0.0) / rate
    linear = np.minimum(hours, to_taper)
    after_linear = levels + rate * linear
    rest = hours - linear
    tapered = 100.0 - (100.0 - np.maximum(after_linear, TAPER_START)) * np.exp(-rate * rest / (100.0 - TAPER_START))
    return np.where(rest > 0, tapered, after_linear)


def consumption_per_km(car: Car, renter: Renter, temperature: float) -> float:
    """Battery points per km: the car's efficiency, the renter's style, and the cold."""
    cold = max(0.0, 15.0 - temperature) / 20.0
    return car.kwh_per_km * renter.style * (1.0 + 0.3 * cold) / car.capacity_kwh * 100.0


@dataclass
class Parked:
    """Samples of a parked car: level, whether plugged in, and hours until staff come (inf: never)."""

    levels: np.ndarray
    plugged: np.ndarray
    staff_in: np.ndarray


def staff_draw(levels: np.ndarray, plugged: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """When staff will recharge each sample (hours from now), decided when the car is left."""
    n = len(levels)
    come = (~plugged) & (levels < STAFF_THRESHOLD) & (rng.random(n) < STAFF_PROBABILITY)
    delay = rng.uniform(*STAFF_DELAY_HOURS, size=n)
    return np.where(come, delay, np.inf)


def park(
    state: Parked, car: Car, weather: Weather, start: float, end: float, rng: np.random.Generator
) -> tuple[Parked, np.ndarray]:
    """Move parked samples from `start` to `end` (hours); returns the new state and the level gained by staff.

    Idle drain varies gap to gap (lognormal noise around the car's rate); charging follows
    the charger and the taper. Staff recharge a car to 85..100 % when they come.
    """
    levels = state.levels.copy()
    n = len(levels)
    noise = rng.lognormal(0.0, 0.25, size=n)
    staff_in = state.staff_in.copy()
    staffed = np.zeros(n)
    t = start
    while t < end - 1e-9:
        step = min(STEP_HOURS, end - t)
        temperature = weather.at(t + step / 2)
        arrive = staff_in <= step
        charging = state.plugged & (car.charger_kw > 0)
        levels = np.where(
            charging,
            charge(levels, np.full(n, charge_rate(car, temperature)), step),
            np.maximum(levels - idle_rate(car, temperature) * noise * step, 0.0),
        )
        if arrive.any():
            target = rng.uniform(*STAFF_TARGET, size=n)
            boosted = np.where(arrive, np.maximum(levels, target), levels)
            staffed += boosted - levels
            levels = boosted
        staff_in = np.where(arrive, np.inf, staff_in - step)
        t += step
    return Parked(levels=levels, plugged=state.plugged, staff_in=staff_in), staffed


def drive(
    levels: np.ndarray, car: Car, renter: Renter, weather: Weather, start: float, hours: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """A trip: returns (levels at return, km driven). Renters top up on the road rather than run flat."""
    n = len(levels)
    km = np.minimum(renter.km_per_hour * max(hours, 0.25) * rng.lognormal(-0.06, 0.35, size=n), 450.0)
    used = km * consumption_per_km(car, renter, float(weather.at(start + hours / 2)))
    after = levels - used
    low = after < TOPUP_BELOW
    topup = low & (rng.random(n) < renter.topup_probability)
    after = np.where(topup, after + rng.uniform(25.0, 50.0, size=n), after)
    return np.clip(after, MIN_LEVEL, 100.0), km


def leave(levels: np.ndarray, car: Car, renter: Renter, rng: np.random.Generator) -> Parked:
    """The car is returned: plugged in by habit when the station has a charger; staff may come later."""
    n = len(levels)
    plugged = (rng.random(n) < renter.plug_probability) & (car.charger_kw > 0)
    return Parked(levels=levels, plugged=plugged, staff_in=staff_draw(levels, plugged, rng))
