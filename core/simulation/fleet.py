"""A seeded car-sharing fleet: its schedule, its true battery trajectory, and the calls Laravel sends.

`simulate(FleetConfig(...))` draws hidden parameters for cars and renters, a schedule of
bookings per car (lead times from minutes to days, late pick-ups and returns, extensions during
a trip, shortened and rescheduled bookings, cancellations), then walks every car's battery
through its real schedule with `world`'s physics. It returns the webhook stream in time order
(the seed's five event bodies with `future_bookings`, plus real-time `/predict` calls from cars
with telematics) and the truth: the level at every pick-up.

The same seed always gives the same fleet, stream and truth. `FleetConfig.world` shifts the
world's hidden parameters (`world.SHIFTS`); the default world draws what it always drew.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np

from core.features import Outcome, Reading
from core.simulation import world
from core.simulation.world import DEFAULT_WORLD, Car, Parked, Renter, Weather, World

EVENT_PATHS = {
    "created": "/api/v1/events/booking-created",
    "started": "/api/v1/events/booking-started",
    "ended": "/api/v1/events/booking-ended",
    "modified": "/api/v1/events/booking-modified",
    "cancelled": "/api/v1/events/booking-cancelled",
    "predict": "/api/v1/predict",
}
# Order of calls that share a timestamp: a return is reported before the next pick-up.
_KIND_ORDER = {"ended": 0, "cancelled": 1, "modified": 2, "created": 3, "predict": 4, "started": 5}


@dataclass(frozen=True)
class FleetConfig:
    cars: int = 40
    renters: int = 150
    days: int = 60
    seed: int = 7
    epoch: datetime = datetime(2026, 1, 5, tzinfo=UTC)
    areas: int = 5  # renters mostly book cars near them
    world: World = DEFAULT_WORLD

    @property
    def hours(self) -> float:
        return self.days * 24.0


@dataclass
class SimBooking:
    """One booking as it really happened, and as the platform announced it along the way."""

    booking_id: str
    car: Car
    renter: Renter
    created: float
    start: float  # final scheduled times
    end: float
    announced_start: float  # at creation
    announced_end: float
    modify_at: float | None = None
    modification_type: str = ""
    cancelled_at: float | None = None
    actual_start: float = math.nan
    actual_end: float = math.nan
    battery_at_start: float = math.nan
    battery_at_end: float = math.nan
    km: float = 0.0
    mileage_at_start: float = 0.0
    charging_at_end: bool = False
    predict_at: list[float] = field(default_factory=list)

    @property
    def cancelled(self) -> bool:
        return self.cancelled_at is not None

    def times_at(self, t: float) -> tuple[float, float]:
        """The scheduled (start, end) as the platform knew them at hour `t`."""
        if self.modify_at is not None and self.modify_at <= t:
            return self.start, self.end
        return self.announced_start, self.announced_end

    def known_at(self, t: float) -> bool:
        return self.created <= t and not (self.cancelled_at is not None and self.cancelled_at <= t)


@dataclass(frozen=True)
class Call:
    """One HTTP call Laravel makes: when, where, and the JSON body."""

    at: datetime
    kind: str
    path: str
    body: dict
    booking_id: str
    vehicle_id: str


@dataclass
class Trajectory:
    """A car's true level over time, as points (hours, level); linear between points."""

    times: list[float] = field(default_factory=list)
    levels: list[float] = field(default_factory=list)

    def add(self, t: float, level: float) -> None:
        self.times.append(t)
        self.levels.append(float(level))

    def at(self, t: float) -> float:
        i = bisect.bisect_right(self.times, t)
        if i == 0:
            return self.levels[0]
        if i >= len(self.times):
            return self.levels[-1]
        t0, t1 = self.times[i - 1], self.times[i]
        l0, l1 = self.levels[i - 1], self.levels[i]
        return l0 if t1 <= t0 else l0 + (l1 - l0) * (t - t0) / (t1 - t0)


@dataclass
class Simulation:
    config: FleetConfig
    weather: Weather
    cars: list[Car]
    renters: list[Renter]
    bookings: list[SimBooking]
    trajectories: dict[str, Trajectory]
    initial_levels: dict[str, float]
    calls: list[Call]

    def when(self, hours: float) -> datetime:
        return self.config.epoch + timedelta(hours=hours)

    def hours(self, at: datetime) -> float:
        return (at - self.config.epoch).total_seconds() / 3600.0

    def completed(self) -> list[SimBooking]:
        """Bookings that ended inside the simulated window, in order of return: the outcome history."""
        done = [b for b in self.bookings if not b.cancelled and b.actual_end <= self.config.hours]
        return sorted(done, key=lambda b: (b.actual_end, b.booking_id))

    def outcomes(self) -> list[Outcome]:
        """The completed bookings as the service records them: what a model trains on."""
        return [
            Outcome(
                vehicle_id=b.car.car_id,
                user_id=b.renter.user_id,
                start=self.when(b.actual_start),
                end=self.when(b.actual_end),
                battery_at_start=b.battery_at_start,
                battery_at_end=b.battery_at_end,
                charging_at_end=b.charging_at_end,
            )
            for b in self.completed()
        ]

    def readings(self) -> list[Reading]:
        """The levels the calls report (telematics on creation, real-time predictions), as the service records them."""
        return [
            Reading(
                call.vehicle_id,
                datetime.fromisoformat(call.body["current_timestamp"]),
                call.body["current_battery_level"],
            )
            for call in self.calls
            if call.body.get("current_battery_level") is not None and call.body.get("current_timestamp")
        ]


def _weather(config: FleetConfig, rng: np.random.Generator) -> Weather:
    days = config.days + 30
    # A slowly wandering weather front: today's offset resembles yesterday's.
    offsets = np.zeros(days)
    for d in range(1, days):
        offsets[d] = 0.7 * offsets[d - 1] + rng.normal(0.0, 2.5)
    doy = config.epoch.timetuple().tm_yday - 1 + config.epoch.hour / 24
    return Weather(epoch_day_of_year=doy, day_offsets=offsets, seasonal_mean=config.world.seasonal_mean)


def _per_car(choices: tuple[float, ...], side: np.random.Generator) -> float:
    """One of a world's per-car choices; a single choice draws nothing."""
    return float(choices[0] if len(choices) == 1 else side.choice(choices))


def _cars(config: FleetConfig, rng: np.random.Generator) -> list[Car]:
    shift = config.world
    # The world's own choices come from a generator of their own: `rng` draws what it always drew.
    side = np.random.default_rng([config.seed, 13])
    cars = []
    for i in range(config.cars):
        charger = rng.choice([0.0, 3.7, 7.4, 11.0, 22.0], p=[0.25, 0.15, 0.3, 0.2, 0.1])
        cars.append(
            Car(
                car_id=str(100 + i),
                capacity_kwh=float(rng.choice([40.0, 58.0, 77.0, 100.0], p=[0.3, 0.35, 0.25, 0.1])),
                kwh_per_km=float(rng.uniform(0.14, 0.21)),
                idle_pct_per_hour=float(rng.lognormal(math.log(0.09), 0.5)) * _per_car(shift.idle_scales, side),
                cold_factor=float(rng.uniform(0.3, 1.5)),
                charger_kw=float(charger) * _per_car(shift.charger_scales, side),
                telematics=bool(rng.random() < 0.8),
                mean_gap_hours=float(rng.uniform(6.0, 30.0)) * shift.gap_scale,
                charge_limit=_per_car(shift.charge_limits, side),
                staff_probability=world.STAFF_PROBABILITY if shift.staff else 0.0,
            )
        )
    return cars


def _renters(config: FleetConfig, rng: np.random.Generator) -> list[Renter]:
    renters = []
    for i in range(config.renters):
        habit = rng.choice(["always", "often", "rarely", "never"], p=[0.25, 0.3, 0.25, 0.2])
        plug = {"always": 0.95, "often": 0.7, "rarely": 0.25, "never": 0.03}[habit]
        renters.append(
            Renter(
                user_id=str(5000 + i),
                km_per_hour=float(rng.lognormal(math.log(11.0), 0.45)) * config.world.km_scale,
                style=float(rng.uniform(0.85, 1.25)),
                plug_probability=plug,
                topup_probability=float(rng.uniform(0.2, 0.9)),
                mean_duration_hours=float(np.clip(rng.lognormal(math.log(3.0), 0.6), 0.75, 30.0)),
                late_probability=float(rng.uniform(0.05, 0.4)),
            )
        )
    return renters


def _lead_hours(rng: np.random.Generator) -> float:
    r = rng.random()
    if r < 0.25:
        return float(rng.uniform(5 / 60, 1.0))
    if r < 0.65:
        return float(rng.uniform(1.0, 24.0))
    return float(rng.uniform(24.0, 120.0))


def _schedule(
    config: FleetConfig,
    car: Car,
    area_renters: list[Renter],
    renters: list[Renter],
    rng: np.random.Generator,
    seq: list,
    own_renter: Renter | None = None,
) -> list[SimBooking]:
    """The car's final schedule, then how it was announced, changed, cancelled and really used.

    With `own_renter` (a world of one renter per car) every booking is that renter's.
    """
    bookings: list[SimBooking] = []
    t = float(rng.uniform(0.0, 24.0))
    while True:
        start = t + 0.5 + float(rng.exponential(car.mean_gap_hours))
        hour = start % 24
        if hour < 6.5:  # few pick-ups at night
            start += 6.5 - hour + float(rng.uniform(0.0, 3.0))
        if start >= config.hours:
            break
        if own_renter is not None:
            renter = own_renter
        else:
            pool = area_renters if rng.random() < 0.85 else renters
            renter = pool[int(rng.integers(len(pool)))]
        duration = float(np.clip(renter.mean_duration_hours * rng.lognormal(0.0, 0.4), 0.5, 72.0))
        start = round(start * 4) / 4  # platforms book in quarter hours
        end = start + round(duration * 4) / 4 or start + 0.5
        seq[0] += 1
        b = SimBooking(
            booking_id=f"BK{config.seed}-{seq[0]}",
            car=car,
            renter=renter,
            created=0.0,
            start=start,
            end=end,
            announced_start=start,
            announced_end=end,
        )
        b.created = max(0.0, start - _lead_hours(rng))
        bookings.append(b)
        t = end
    for i, b in enumerate(bookings):
        prev_end = bookings[i - 1].end if i else -1e9
        next_start = bookings[i + 1].start if i + 1 < len(bookings) else 1e9
        _changes(b, prev_end, next_start, rng)
        _actual_times(b, prev_actual_end=bookings[i - 1].actual_end if i else -1e9, next_start=next_start, rng=rng)
    return bookings


def _changes(b: SimBooking, prev_end: float, next_start: float, rng: np.random.Generator) -> None:
    """Cancellations, reschedules and shortened bookings, decided before the pick-up."""
    r = rng.random()
    if r < 0.08 and b.start - 5 / 60 > b.created:
        b.cancelled_at = float(rng.uniform(b.created, b.start - 5 / 60))
        return
    if r < 0.14:
        shift = float(rng.uniform(-3.0, 3.0))
        a_start, a_end = b.start + shift, b.end + shift
        latest = min(a_start, b.start) - 10 / 60
        if a_start > prev_end + 0.25 and a_end < next_start - 0.25 and latest > b.created:
            b.announced_start, b.announced_end = a_start, a_end
            b.modify_at, b.modification_type = float(rng.uniform(b.created, latest)), "rescheduled"
    elif r < 0.19:
        latest = b.start - 10 / 60
        if latest > b.created:
            b.announced_end = b.end + float(rng.uniform(1.0, 4.0))
            b.modify_at, b.modification_type = float(rng.uniform(b.created, latest)), "shortened"


def _actual_times(b: SimBooking, prev_actual_end: float, next_start: float, rng: np.random.Generator) -> None:
    """Late pick-ups, late and early returns, and extensions asked for during the trip."""
    if b.cancelled:
        return
    late = rng.uniform(0.0, 0.33) if rng.random() < b.renter.late_probability else rng.uniform(0.0, 0.05)
    b.actual_start = max(b.start + float(late), prev_actual_end + 1 / 60)
    duration = b.end - b.start
    if b.modify_at is None and duration > 1.0 and rng.random() < 0.07:
        cut = float(rng.uniform(0.5, min(3.0, duration - 0.5)))
        b.announced_end = b.end - cut
        if b.announced_end > b.actual_start + 0.1:
            b.modify_at = float(rng.uniform(b.actual_start + 0.05, b.announced_end))
            b.modification_type = "extended"
        else:
            b.announced_end = b.end
    r = rng.random()
    if r < 0.2:
        end = b.end + float(rng.uniform(0.0, 0.75))
    elif r < 0.4:
        end = b.end - float(rng.uniform(0.0, 0.3)) * duration
    else:
        end = b.end + float(rng.uniform(-0.1, 0.1))
    b.actual_end = max(min(end, next_start - 0.25), b.actual_start + 0.25)


def _walk(
    config: FleetConfig, car: Car, bookings: list[SimBooking], weather: Weather, rng: np.random.Generator
) -> tuple[Trajectory, float]:
    """The car's true level through its real schedule; fills each booking's levels and km."""
    trajectory = Trajectory()
    level0 = float(rng.uniform(45.0, 95.0))
    state = Parked(levels=np.array([level0]), plugged=np.array([False]), staff_in=np.array([np.inf]))
    t = 0.0
    mileage = float(rng.uniform(5_000, 60_000))
    trajectory.add(t, level0)
    for b in bookings:
        if b.cancelled or b.actual_start >= config.hours + 24 * 10:
            continue
        while t < b.actual_start - 1e-9:  # park in steps, recording the trajectory
            step_end = min(b.actual_start, t + world.STEP_HOURS)
            state, _ = world.park(state, car, weather, t, step_end, rng)
            t = step_end
            trajectory.add(t, state.levels[0])
        b.battery_at_start = round(float(state.levels[0]), 1)
        levels, km = world.drive(state.levels, car, b.renter, weather, t, b.actual_end - b.actual_start, rng)
        b.km, b.mileage_at_start = round(float(km[0]), 1), round(mileage, 1)
        mileage += b.km
        t = b.actual_end
        state = world.leave(levels, car, b.renter, rng)
        b.battery_at_end = round(float(levels[0]), 1)
        b.charging_at_end = bool(state.plugged[0])
        trajectory.add(t, levels[0])
    return trajectory, level0


def simulate(config: FleetConfig, progress: Callable[[int], None] | None = None) -> Simulation:
    """Draw the fleet and walk every car; `progress(1)` is called after each car (for a progress bar)."""
    rng = np.random.default_rng(config.seed)
    weather = _weather(config, rng)
    cars = _cars(config, rng)
    renters = _renters(config, rng)
    areas = [[r for j, r in enumerate(renters) if j % config.areas == a] or renters for a in range(config.areas)]
    seq = [0]
    bookings: list[SimBooking] = []
    trajectories: dict[str, Trajectory] = {}
    initial: dict[str, float] = {}
    for i, car in enumerate(cars):
        # One renter per car: car i is renter i's (renter i lives in car i's area); fewer renters than cars share.
        own = renters[i % len(renters)] if config.world.one_renter_per_car else None
        car_bookings = _schedule(config, car, areas[i % config.areas], renters, rng, seq, own)
        trajectories[car.car_id], initial[car.car_id] = _walk(config, car, car_bookings, weather, rng)
        bookings += car_bookings
        if progress:
            progress(1)
    sim = Simulation(config, weather, cars, renters, bookings, trajectories, initial, calls=[])
    sim.calls = _calls(sim, rng)
    return sim


# --- the stream Laravel sends -------------------------------------------------------------


def _iso(sim: Simulation, hours: float) -> str:
    return sim.when(hours).isoformat().replace("+00:00", "Z")


def _future(sim: Simulation, car_bookings: list[SimBooking], t: float, exclude: str) -> list[dict]:
    """The car's bookings the platform knows at `t` that have not started, as `future_bookings`."""
    items = []
    for b in car_bookings:
        if b.booking_id == exclude or not b.known_at(t) or b.actual_start <= t:
            continue
        start, end = b.times_at(t)
        items.append((start, b.booking_id, end, b.renter.user_id))
    return [
        {"booking_id": bid, "user_id": uid, "starts_at": _iso(sim, s), "ends_at": _iso(sim, e)}
        for s, bid, e, uid in sorted(items)
    ]


def _calls(sim: Simulation, rng: np.random.Generator) -> list[Call]:
    horizon = sim.config.hours
    by_car: dict[str, list[SimBooking]] = {}
    for b in sim.bookings:
        by_car.setdefault(b.car.car_id, []).append(b)
    raw: list[tuple[float, int, str, SimBooking]] = []
    for b in sim.bookings:
        raw.append((b.created, _KIND_ORDER["created"], "created", b))
        if b.cancelled:
            raw.append((b.cancelled_at, _KIND_ORDER["cancelled"], "cancelled", b))
            continue
        if b.modify_at is not None:
            raw.append((b.modify_at, _KIND_ORDER["modified"], "modified", b))
        raw.append((b.actual_start, _KIND_ORDER["started"], "started", b))
        raw.append((b.actual_end, _KIND_ORDER["ended"], "ended", b))
        if b.car.telematics and rng.random() < 0.35:
            t = (
                float(rng.uniform(max(b.created, b.start - 24.0), b.start - 0.25))
                if b.start - 0.25 > b.created
                else None
            )
            if t is not None and _parked_at(by_car[b.car.car_id], t):
                b.predict_at.append(t)
                raw.append((t, _KIND_ORDER["predict"], "predict", b))
    raw.sort(key=lambda r: (r[0], r[1], r[3].booking_id))
    calls = []
    for t, _, kind, b in raw:
        if t > horizon:
            continue
        body = _BODIES[kind](sim, by_car[b.car.car_id], b, t)
        calls.append(Call(sim.when(t), kind, EVENT_PATHS[kind], body, b.booking_id, b.car.car_id))
    return calls


def _parked_at(car_bookings: list[SimBooking], t: float) -> bool:
    return not any(not b.cancelled and b.actual_start <= t < b.actual_end for b in car_bookings)


def _level(sim: Simulation, b: SimBooking, t: float) -> float:
    return round(sim.trajectories[b.car.car_id].at(t), 1)


def _created(sim, car_bookings, b, t) -> dict:
    body = {
        "booking_id": b.booking_id,
        "vehicle_id": b.car.car_id,
        "user_id": b.renter.user_id,
        "starts_at": _iso(sim, b.announced_start),
        "ends_at": _iso(sim, b.announced_end),
        "future_bookings": _future(sim, car_bookings, t, b.booking_id),
    }
    if b.car.telematics:
        body |= {"current_battery_level": _level(sim, b, t), "current_timestamp": _iso(sim, t)}
    return body


def _modified(sim, car_bookings, b, t) -> dict:
    return {
        "booking_id": b.booking_id,
        "vehicle_id": b.car.car_id,
        "user_id": b.renter.user_id,
        "new_starts_at": _iso(sim, b.start),
        "new_ends_at": _iso(sim, b.end),
        "modification_type": b.modification_type,
        "future_bookings": _future(sim, car_bookings, t, b.booking_id),
    }


def _cancelled(sim, car_bookings, b, t) -> dict:
    return {
        "booking_id": b.booking_id,
        "vehicle_id": b.car.car_id,
        "future_bookings": _future(sim, car_bookings, t, b.booking_id),
    }


def _started(sim, car_bookings, b, t) -> dict:
    return {
        "booking_id": b.booking_id,
        "vehicle_id": b.car.car_id,
        "user_id": b.renter.user_id,
        "actual_battery_at_start": b.battery_at_start,
        "actual_started_at": _iso(sim, b.actual_start),
        "future_bookings": _future(sim, car_bookings, t, b.booking_id),
    }


def _ended(sim, car_bookings, b, t) -> dict:
    return {
        "booking_id": b.booking_id,
        "vehicle_id": b.car.car_id,
        "user_id": b.renter.user_id,
        "starts_at": _iso(sim, b.actual_start),
        "ends_at": _iso(sim, b.actual_end),
        "battery_at_start": b.battery_at_start,
        "battery_at_end": b.battery_at_end,
        "mileage_at_start": b.mileage_at_start,
        "mileage_at_end": round(b.mileage_at_start + b.km, 1),
        "charging_at_end": b.charging_at_end,
        "future_bookings": _future(sim, car_bookings, t, b.booking_id),
    }


def _predict(sim, car_bookings, b, t) -> dict:
    start, _ = b.times_at(t)
    between = []
    for other in car_bookings:
        if other is b or not other.known_at(t) or other.actual_start <= t:
            continue
        s, e = other.times_at(t)
        if t <= s and e <= start:
            between.append({"starts_at": _iso(sim, s), "ends_at": _iso(sim, e), "user_id": other.renter.user_id})
    return {
        "vehicle_id": b.car.car_id,
        "user_id": b.renter.user_id,
        "booking_id": b.booking_id,
        "booking_start_time": _iso(sim, start),
        "current_battery_level": _level(sim, b, t),
        "current_timestamp": _iso(sim, t),
        "intermediate_bookings": sorted(between, key=lambda x: x["starts_at"]),
    }


_BODIES = {
    "created": _created,
    "modified": _modified,
    "cancelled": _cancelled,
    "started": _started,
    "ended": _ended,
    "predict": _predict,
}
