"""What Laravel knows about each car as the stream is replayed, and the predictors the service is compared with.

`KnownFleet` follows the calls exactly as the platform would see them: the last reported level
(pick-up, return, telematics), whether the car was left plugged in, and the schedule from
`future_bookings`, creations, modifications and cancellations. From that knowledge:

- persistence: the last known level, unchanged;
- the seed's EMA cascade: idle drain 0.5 %/h and each booking drained at the car's EMA of
  drain per hour (alpha 0.3), no charging, a +-10 point interval (the seed's own example);
- the oracle: the simulator's hidden parameters (car, charger, charge limit, staff, renters, and
  the weather, future days included: those of the simulated world, shifted or not) and physics,
  run forward from the same knowledge by Monte Carlo. Its median
  is the practical limit of a predictor that knows what Laravel knows plus everything the
  simulator hides but the random draws; knowing the weather makes it a slightly strong bound.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

from core.simulation import world
from core.simulation.fleet import Simulation
from core.simulation.world import Parked

SEED_IDLE_PER_HOUR = 0.5
SEED_DEFAULT_DRAIN = 5.0
SEED_ALPHA = 0.3
SEED_HALF_WIDTH = 10.0
ORACLE_SAMPLES = 400


@dataclass
class Planned:
    booking_id: str
    user_id: str
    start: datetime
    end: datetime


@dataclass
class KnownCar:
    level: float | None = None
    at: datetime | None = None
    plugged: bool = False
    returned_at: datetime | None = None  # last return (for when staff may come)
    active: Planned | None = None  # the booking out on the road, if any
    schedule: dict[str, Planned] = field(default_factory=dict)
    ema_drain: float | None = None


def _dt(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


class KnownFleet:
    """Laravel's view of every car, updated call by call."""

    def __init__(self) -> None:
        self.cars: dict[str, KnownCar] = {}

    def car(self, vehicle_id: str) -> KnownCar:
        return self.cars.setdefault(vehicle_id, KnownCar())

    def observe(self, kind: str, body: dict) -> None:
        car = self.car(str(body["vehicle_id"]))
        for item in body.get("future_bookings") or []:
            car.schedule[item["booking_id"]] = Planned(
                item["booking_id"], str(item.get("user_id") or ""), _dt(item["starts_at"]), _dt(item["ends_at"])
            )
        bid = body.get("booking_id")
        if kind == "created":
            car.schedule[bid] = Planned(
                bid, str(body.get("user_id") or ""), _dt(body["starts_at"]), _dt(body["ends_at"])
            )
            if body.get("current_battery_level") is not None:
                self._reading(car, body["current_battery_level"], _dt(body["current_timestamp"]))
        elif kind == "modified" and bid in car.schedule:
            p = car.schedule[bid]
            p.start, p.end = _dt(body["new_starts_at"]), _dt(body["new_ends_at"])
            if car.active is not None and car.active.booking_id == bid:
                car.active.end = p.end
        elif kind == "modified" and car.active is not None and car.active.booking_id == bid:
            car.active.end = _dt(body["new_ends_at"])
        elif kind == "cancelled":
            car.schedule.pop(bid, None)
        elif kind == "started":
            planned = car.schedule.pop(bid, None)
            at = _dt(body["actual_started_at"])
            end = planned.end if planned else at
            car.active = Planned(bid, str(body.get("user_id") or ""), at, max(end, at))
            self._reading(car, body["actual_battery_at_start"], at)
        elif kind == "ended":
            car.schedule.pop(bid, None)
            start, end = _dt(body["starts_at"]), _dt(body["ends_at"])
            hours = max((end - start).total_seconds() / 3600, 0.25)
            drain = (body["battery_at_start"] - body["battery_at_end"]) / hours
            car.ema_drain = drain if car.ema_drain is None else car.ema_drain + SEED_ALPHA * (drain - car.ema_drain)
            car.active = None
            car.plugged, car.returned_at = bool(body.get("charging_at_end")), end
            self._reading(car, body["battery_at_end"], end)
        elif kind == "predict":
            self._reading(car, body["current_battery_level"], _dt(body["current_timestamp"]))

    @staticmethod
    def _reading(car: KnownCar, level: float, at: datetime) -> None:
        if car.at is None or at >= car.at:
            car.level, car.at = float(level), at

    def snapshot(self, vehicle_id: str, target_id: str, target_start: datetime) -> Snapshot:
        """What is known now for predicting `target_id`: the state and the bookings before it."""
        car = self.car(vehicle_id)
        before = sorted(
            (p for p in car.schedule.values() if p.booking_id != target_id and p.start < target_start),
            key=lambda p: (p.start, p.booking_id),
        )
        return Snapshot(
            vehicle_id=vehicle_id,
            level=car.level,
            at=car.at,
            plugged=car.plugged,
            returned_at=car.returned_at,
            active=Planned(**vars(car.active)) if car.active else None,
            trips=[Planned(**vars(p)) for p in before],
            target_start=target_start,
            ema_drain=car.ema_drain,
        )


@dataclass(frozen=True)
class Snapshot:
    vehicle_id: str
    level: float | None
    at: datetime | None
    plugged: bool
    returned_at: datetime | None
    active: Planned | None
    trips: list[Planned]
    target_start: datetime
    ema_drain: float | None


@dataclass(frozen=True)
class Estimate:
    level: float
    lower: float | None = None
    upper: float | None = None


def _hours(a: datetime, b: datetime) -> float:
    return max((b - a).total_seconds() / 3600.0, 0.0)


def persistence(s: Snapshot, fallback: float = 60.0) -> Estimate:
    return Estimate(s.level if s.level is not None else fallback)


def seed_ema(s: Snapshot, fallback: float = 60.0) -> Estimate:
    """The seed's cascade: idle drain between bookings, each booking drained at the car's EMA rate."""
    if s.level is None:
        return Estimate(fallback, fallback - SEED_HALF_WIDTH, fallback + SEED_HALF_WIDTH)
    drain = s.ema_drain if s.ema_drain is not None else SEED_DEFAULT_DRAIN
    level, cursor = s.level, s.at
    trips = ([s.active] if s.active else []) + s.trips
    for trip in trips:
        start = max(trip.start, cursor)
        if start >= s.target_start:
            break
        level -= SEED_IDLE_PER_HOUR * _hours(cursor, start)
        level -= max(drain, 0.0) * _hours(start, trip.end)
        level, cursor = min(max(level, 0.0), 100.0), max(trip.end, start)
    level -= SEED_IDLE_PER_HOUR * _hours(cursor, s.target_start)
    level = min(max(level, 0.0), 100.0)
    return Estimate(level, max(level - SEED_HALF_WIDTH, 0.0), min(level + SEED_HALF_WIDTH, 100.0))


def oracle(sim: Simulation, s: Snapshot, seed: int = 0) -> Estimate:
    """Median and 95 % range of the true physics run forward from what Laravel knows, with the hidden parameters."""
    rng = np.random.default_rng(seed)
    car = next(c for c in sim.cars if c.car_id == s.vehicle_id)
    renters = {r.user_id: r for r in sim.renters}
    n = ORACLE_SAMPLES
    if s.level is None:  # never heard from the car: no better guess than the fleet's usual level
        return Estimate(60.0)
    levels = np.full(n, s.level)
    t = sim.hours(s.at)
    plugged = np.full(n, s.plugged)
    staff_in = np.full(n, np.inf)
    if s.active is None and not s.plugged and s.level < world.STAFF_THRESHOLD:
        since = sim.hours(s.at) - (sim.hours(s.returned_at) if s.returned_at else sim.hours(s.at))
        staff_in = world.staff_draw(levels, plugged, rng, car.staff_probability) - since
        staff_in = np.where(staff_in <= 0, np.inf, staff_in)
    state = Parked(levels, plugged, staff_in)
    trips = ([s.active] if s.active else []) + s.trips
    target = sim.hours(s.target_start)
    for trip in trips:
        start, end = max(sim.hours(trip.start), t), sim.hours(trip.end)
        if start >= target:
            break
        state, _ = world.park(state, car, sim.weather, t, start, rng)
        renter = renters.get(trip.user_id) or sim.renters[0]
        levels, _ = world.drive(state.levels, car, renter, sim.weather, start, max(end - start, 0.0), rng)
        state = world.leave(levels, car, renter, rng)
        t = max(end, start)
    if target > t:
        state, _ = world.park(state, car, sim.weather, t, target, rng)
    low, mid, high = np.percentile(state.levels, [2.5, 50, 97.5])
    return Estimate(float(mid), float(low), float(high))
