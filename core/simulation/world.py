"""The simulated world's hidden physics: cars, renters, weather, and how a battery moves.

Every function is vectorised over Monte Carlo samples (numpy arrays of levels), so the same code
generates the one true trajectory (arrays of length 1) and the oracle's thousands of possible
futures. Times are hours since the simulation epoch (floats), converted to datetimes only when
events are emitted.

What the service never sees lives here: battery sizes, efficiencies, the station's charger
power, the cold's effect on idle drain and consumption, renters' distances and habits, and the
staff who recharge low cars without telling the platform.

`World` says how a simulated world departs from the default one (`SHIFTS` names one world per
departure, and `all_shifts` combines them); the default `World()` draws exactly what the
simulator drew before worlds existed, so seeds keep their fleets.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

TAPER_START = 80.0
STEP_HOURS = 2.0  # weather is integrated in steps of at most this long
STAFF_THRESHOLD = 30.0  # a car returned below this and not plugged in may be recharged by staff
STAFF_PROBABILITY = 0.7
STAFF_DELAY_HOURS = (1.0, 10.0)
STAFF_TARGET = (85.0, 100.0)
TOPUP_BELOW = 15.0  # a renter about to fall below this may top up on the road
MIN_LEVEL = 3.0  # renters do not run a car flat: they return or charge before
SEASONAL_MEAN = 11.0  # degrees: a temperate climate


@dataclass(frozen=True)
class World:
    """How a world departs from the default one: each field at its default changes nothing.

    The per-car choices (`charger_scales`, `idle_scales`, `charge_limits`) are drawn for each car
    from one of the tuple's values when it holds more than one, with a generator of their own, so
    that a world's shift never moves the default world's draws: the same seed gives the same
    schedules and renters in every world that does not change them.
    """

    charger_scales: tuple[float, ...] = (1.0,)  # home charger power times one of these
    idle_scales: tuple[float, ...] = (1.0,)  # idle drain times one of these
    charge_limits: tuple[float, ...] = (100.0,)  # the car stops charging at one of these levels
    staff: bool = True  # staff recharge low cars nobody plugged in
    one_renter_per_car: bool = False  # each car is booked by its own renter only
    gap_scale: float = 1.0  # how long a car stays parked between bookings, times this
    km_scale: float = 1.0  # distance per booked hour, times this
    seasonal_mean: float = SEASONAL_MEAN  # the climate's yearly mean temperature


DEFAULT_WORLD = World()
# Each shift changes one thing, far outside the default world's range (see docs/models.md).
SHIFTS: dict[str, World] = {
    "fast_chargers": World(charger_scales=(3.0,)),  # 11 to 66 kW
    "slow_chargers": World(charger_scales=(0.25,)),  # 0.9 to 5.5 kW
    "charge_limit": World(charge_limits=(80.0, 90.0)),
    "no_idle_drain": World(idle_scales=(0.0,)),
    "heavy_idle_drain": World(idle_scales=(6.0,)),  # about 0.5 %/h, 13 % a day
    "no_staff": World(staff=False),
    "one_renter_per_car": World(one_renter_per_car=True),
    "long_gaps": World(gap_scale=4.0),  # 1 to 5 days on average between bookings, car by car
    "winter": World(seasonal_mean=-5.0),
    "long_trips": World(km_scale=2.0),
}
# Every shift at once; the ones that exclude each other (fast or slow chargers, no or heavy idle
# drain) are mixed, car by car.
SHIFTS["all_shifts"] = replace(
    DEFAULT_WORLD,
    charger_scales=(3.0, 0.25),
    idle_scales=(0.0, 6.0),
    charge_limits=SHIFTS["charge_limit"].charge_limits,
    staff=False,
    one_renter_per_car=True,
    gap_scale=SHIFTS["long_gaps"].gap_scale,
    km_scale=SHIFTS["long_trips"].km_scale,
    seasonal_mean=SHIFTS["winter"].seasonal_mean,
)


def world_named(name: str) -> World:
    """`default` or one of `SHIFTS`."""
    if name == "default":
        return DEFAULT_WORLD
    try:
        return SHIFTS[name]
    except KeyError:
        raise ValueError(f"unknown world {name!r}: default or one of {', '.join(SHIFTS)}") from None


@dataclass(frozen=True)
class Weather:
    """Outdoor temperature: seasonal and daily cycles plus a random offset for each day."""

    epoch_day_of_year: float
    day_offsets: np.ndarray  # degrees, one per simulated day (and some margin)
    seasonal_mean: float = SEASONAL_MEAN

    def at(self, hours: float | np.ndarray) -> np.ndarray:
        hours = np.asarray(hours, dtype=float)
        day = np.clip((hours // 24).astype(int), 0, len(self.day_offsets) - 1)
        doy = self.epoch_day_of_year + hours / 24.0
        seasonal = self.seasonal_mean - 10.0 * np.cos(2 * math.pi * (doy - 20.0) / 365.25)
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
    charge_limit: float = 100.0  # the level at which it stops charging
    staff_probability: float = STAFF_PROBABILITY  # staff come to it when it is left low and unplugged

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


def charge(levels: np.ndarray, rate: np.ndarray, hours: float, limit: float = 100.0) -> np.ndarray:
    """Linear at `rate` up to 80 %, then an exponential approach to 100 %, stopping at the car's `limit`.

    A car plugged in above its limit neither charges nor drains (the charger holds it).
    """
    rate = np.maximum(rate, 1e-9)
    to_taper = np.maximum(TAPER_START - levels, 0.0) / rate
    linear = np.minimum(hours, to_taper)
    after_linear = levels + rate * linear
    rest = hours - linear
    tapered = 100.0 - (100.0 - np.maximum(after_linear, TAPER_START)) * np.exp(-rate * rest / (100.0 - TAPER_START))
    charged = np.where(rest > 0, tapered, after_linear)
    if limit >= 100.0:  # the default world: exactly the arithmetic it always had
        return charged
    return np.where(levels >= limit, levels, np.minimum(charged, limit))


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


def staff_draw(
    levels: np.ndarray, plugged: np.ndarray, rng: np.random.Generator, probability: float = STAFF_PROBABILITY
) -> np.ndarray:
    """When staff will recharge each sample (hours from now), decided when the car is left.

    The draws are made whatever `probability` is (0: no staff), so a world without staff keeps
    the default world's sequence of draws.
    """
    n = len(levels)
    come = (~plugged) & (levels < STAFF_THRESHOLD) & (rng.random(n) < probability)
    delay = rng.uniform(*STAFF_DELAY_HOURS, size=n)
    return np.where(come, delay, np.inf)


def park(
    state: Parked, car: Car, weather: Weather, start: float, end: float, rng: np.random.Generator
) -> tuple[Parked, np.ndarray]:
    """Move parked samples from `start` to `end` (hours); returns the new state and the level gained by staff.

    Idle drain varies gap to gap (lognormal noise around the car's rate); charging follows
    the charger and the taper up to the car's charge limit. Staff recharge a car to 85..100 %
    (at most its limit) when they come.
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
            charge(levels, np.full(n, charge_rate(car, temperature)), step, car.charge_limit),
            np.maximum(levels - idle_rate(car, temperature) * noise * step, 0.0),
        )
        if arrive.any():
            target = np.minimum(rng.uniform(*STAFF_TARGET, size=n), car.charge_limit)
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
    return Parked(levels=levels, plugged=plugged, staff_in=staff_draw(levels, plugged, rng, car.staff_probability))
