"""Features of the gap and trip models, built by replaying a car's and a renter's outcomes in time order.

One definition serves training and serving: training replays the whole outcome history once
(point in time: each row sees only the outcomes before it), serving replays the last
`HISTORY` outcomes of the car and of each renter. With EMA weights (alpha 0.3) the outcomes
older than that weigh less than 0.001 %, so both see the same numbers.

Pure Python, no database.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime

from core.ema import (
    ALPHA,
    BASELINE_ALPHA,
    FOUND_CHARGED_GAIN,
    MIN_GAP_HOURS,
    charging_gap_learned,
)
from core.physics import DEFAULT_CHARGE, DEFAULT_DRIVE, DEFAULT_IDLE_DRAIN, FULL, gap_change, trip_change

HISTORY = 40  # outcomes replayed at serving time, per car and per renter
HABIT_ALPHA = BASELINE_ALPHA  # a renter's plugging habit: the mean of the first 20 returns, then a slow EMA (`_share`)
COUNT_CAP = 30  # counts are features up to this; beyond it nothing changes
MID_GAP_ROWS = 8  # gap rows from readings reported inside one parked gap, at most
MID_GAP_SPACING_HOURS = 1.0

GAP_FEATURES = [
    "hours",
    "start_level",
    "charging",
    "hour_of_day",
    "end_hour_of_day",
    "day_of_week",
    "month",
    "car_idle",
    "car_charge",
    "car_found_charged",
    "car_plug",
    "car_gaps",
    "since_return",
    "car_ceiling",
    "physics",
]
TRIP_FEATURES = [
    "hours",
    "start_level",
    "hour_of_day",
    "day_of_week",
    "month",
    "car_drive",
    "car_trips",
    "renter_drive",
    "renter_drive_std",
    "renter_trips",
    "renter_topup",
    "physics",
]
# Every model input, by segment kind: what an artifact was trained on and the drift check bins.
FEATURES = {"gap": GAP_FEATURES, "trip": TRIP_FEATURES}
# The column both kinds carry with the segment's change by the car's own learned physics (`gap_physics`,
# `trip_physics`): the boosters learn what is left over and add it back (`core.gbm`).
PHYSICS = "physics"


@dataclass(frozen=True)
class Reading:
    """A level the platform reported for a car (telematics on `booking-created`, real-time `/predict`)."""

    vehicle_id: str
    at: datetime
    level: float


@dataclass(frozen=True)
class Outcome:
    """A finished booking, as the service records it."""

    vehicle_id: str
    user_id: str
    start: datetime
    end: datetime
    battery_at_start: float
    battery_at_end: float
    charging_at_end: bool
    # Whether the car had been seen charging by this return, fleet-wide (any renter's outcome up to this one). None:
    # the replay's own car state decides, which is the same thing when the replay holds every outcome (training);
    # serving replays a renter's outcomes alone and reads it from the database (`learning.selectors`).
    car_chargeable: bool | None = None


def _ema(old: float | None, value: float) -> float:
    return value if old is None else old + ALPHA * (value - old)


def _share(old: float | None, value: float, n: int) -> float:
    """A share of events (a renter's returns left plugged in): the plain mean of the first 1 / HABIT_ALPHA, then a
    slow EMA.

    Why not the EMA of the rates (alpha 0.3): a habit is a share, not a rate that drifts from trip to trip, and an
    EMA weighs the last trip 0.3 however many came before. For a renter who plugs in one return in three its
    estimate keeps a standard deviation of about 0.2 (sqrt(0.3 / 1.7 x 1/3 x 2/3)) however long their record, and
    the Monte Carlo of every future trip of theirs draws its plug-ins from it.
    """
    return value if old is None else old + max(HABIT_ALPHA, 1.0 / n) * (value - old)


def _hours(start: datetime, end: datetime) -> float:
    return max((end - start).total_seconds() / 3600.0, 0.0)


@dataclass
class CarState:
    drive: float | None = None  # points per hour while driven
    idle: float | None = None  # points per hour lost while parked unplugged
    charge: float | None = None  # points per hour gained while plugged in (below the taper)
    ceiling: float | None = None  # the level its charging stops at (a charge limit), once shown; None: full
    ceiling_candidate: float | None = None  # where the last charging gap that flattened stopped
    found_charged: float | None = None  # share of unplugged gaps that ended charged anyway
    plug: float | None = None  # share of returns left plugged in
    ever_plugged: bool = False
    trips: int = 0
    gaps: int = 0
    last_end: datetime | None = None
    last_end_level: float | None = None
    last_charging: bool | None = None


@dataclass
class RenterState:
    drive: float | None = None
    drive_var: float = 0.0
    plug: float | None = None  # share of their returns to cars that can charge left plugged in
    plug_returns: int = 0  # returns to cars that can charge: what `plug` is the share of
    topup: float | None = None  # share of trips that gained charge
    trips: int = 0


def _nan(value: float | None) -> float:
    return math.nan if value is None else value


def _time_features(at: datetime) -> dict[str, float]:
    return {"hour_of_day": at.hour + at.minute / 60.0, "day_of_week": at.weekday(), "month": at.month}


def _known(value: float | None, default: float) -> float:
    return default if value is None else value


def car_ceiling(car: CarState) -> float:
    """The level the car's charging stops at: its learned charge limit, or full when it never showed one."""
    return _known(car.ceiling, FULL)


def gap_physics(car: CarState, *, hours: float, start_level: float, charging: bool) -> float:
    """A parked gap's change by the car's own learned rates (the fleet's defaults for what it has not shown):
    charging at its rate up to its ceiling, or idling at its drain. What the gap model starts from."""
    return gap_physics_of(car, hours=hours, charging=charging)(start_level)


def gap_physics_of(car: CarState, *, hours: float, charging: bool) -> Callable[[float], float]:
    """`gap_physics` as a function of the start level, the car's rates read once (a cascade prices each
    segment at a grid of start levels)."""
    charge, idle, ceiling = _known(car.charge, DEFAULT_CHARGE), _known(car.idle, DEFAULT_IDLE_DRAIN), car_ceiling(car)
    return lambda level: gap_change(level, hours, charging=charging, charge=charge, idle=idle, ceiling=ceiling)


def trip_drive(car: CarState, renter: RenterState) -> float:
    """Points per hour a trip drains: the mean of the renter's and the car's learned drains, where known.

    The drain is the renter's distance per hour times the car's consumption, so each history carries half."""
    known = [rate for rate in (car.drive, renter.drive) if rate is not None]
    return max(sum(known) / len(known), 0.0) if known else DEFAULT_DRIVE


def trip_physics(car: CarState, renter: RenterState, *, hours: float, start_level: float) -> float:
    """A trip's change by the renter's and the car's learned drain per hour, never below empty."""
    return trip_physics_of(car, renter, hours=hours)(start_level)


def trip_physics_of(car: CarState, renter: RenterState, *, hours: float) -> Callable[[float], float]:
    """`trip_physics` as a function of the start level, the drain worked out once."""
    drive = trip_drive(car, renter)
    return lambda level: trip_change(level, hours, drive=drive)


def gap_row(
    car: CarState, *, start: datetime, end: datetime, start_level: float, charging: bool, since_return: float = 0.0
) -> dict[str, float]:
    """The gap model's inputs for a parked stretch from `start` to `end`.

    `since_return` is how long the car had already been parked at `start` (0 when the stretch
    starts at a return): a stretch that starts from a level reported mid-way through a parked
    spell is not the same as one that starts when the car is left. Staff who recharge a low car
    do it in the first hours, so a car still low many hours after its return is likely to stay low.
    """
    hours = _hours(start, end)
    return {
        "hours": hours,
        "start_level": start_level,
        "charging": float(charging),
        **_time_features(start),
        "end_hour_of_day": end.hour + end.minute / 60.0,
        "car_idle": _nan(car.idle),
        "car_charge": _nan(car.charge),
        "car_found_charged": _nan(car.found_charged),
        "car_plug": _nan(car.plug),
        "car_gaps": min(car.gaps, COUNT_CAP),
        "since_return": since_return,
        "car_ceiling": car_ceiling(car),
        PHYSICS: gap_physics(car, hours=hours, start_level=start_level, charging=charging),
    }


def trip_row(
    car: CarState, renter: RenterState, *, start: datetime, end: datetime, start_level: float
) -> dict[str, float]:
    """The trip model's inputs for a booking driven from `start` to `end`."""
    hours = _hours(start, end)
    return {
        "hours": hours,
        "start_level": start_level,
        **_time_features(start),
        "car_drive": _nan(car.drive),
        "car_trips": min(car.trips, COUNT_CAP),
        "renter_drive": _nan(renter.drive),
        "renter_drive_std": math.sqrt(renter.drive_var) if renter.trips > 1 else math.nan,
        "renter_trips": min(renter.trips, COUNT_CAP),
        "renter_topup": _nan(renter.topup),
        PHYSICS: trip_physics(car, renter, hours=hours, start_level=start_level),
    }


def plug_probability(car: CarState, renter: RenterState, fleet_plug: float) -> float:
    """Chance the car is left plugged in after this renter's trip: the renter's habit, if the car can charge.

    `fleet_plug` is the fleet's share of returns left plugged in on cars that can charge, as the renter's habit is
    theirs (`RenterState.plug`): the question asked here is the renter's, given a car with a charger.
    """
    if not car.ever_plugged:
        return 0.02 if car.trips >= 5 else fleet_plug * 0.5
    n = renter.plug_returns
    habit = fleet_plug if renter.plug is None else (n * renter.plug + 2 * fleet_plug) / (n + 2)
    return min(max(habit, 0.01), 0.99)


@dataclass
class FeatureBook:
    """Running car and renter states; `observe` returns the rows an outcome teaches, then learns it."""

    cars: dict[str, CarState] = field(default_factory=dict)
    renters: dict[str, RenterState] = field(default_factory=dict)

    def car(self, vehicle_id: str) -> CarState:
        return self.cars.setdefault(vehicle_id, CarState())

    def renter(self, user_id: str) -> RenterState:
        return self.renters.setdefault(user_id, RenterState())

    def observe(self, o: Outcome, *, learn_renter: bool = True) -> tuple[dict | None, dict]:
        """Rows for the gap before this booking (if the car's previous return is known) and for its trip."""
        car, renter = self.car(o.vehicle_id), self.renter(o.user_id)
        gap = None
        if car.last_end is not None and o.start >= car.last_end and car.last_end_level is not None:
            gap = gap_row(
                car, start=car.last_end, end=o.start, start_level=car.last_end_level, charging=bool(car.last_charging)
            )
            gap["target"] = o.battery_at_start - car.last_end_level
            self._learn_gap(car, gap)
        trip = trip_row(car, renter, start=o.start, end=o.end, start_level=o.battery_at_start)
        trip["target"] = o.battery_at_end - o.battery_at_start
        self._learn_trip(car, renter if learn_renter else None, o, trip["hours"])
        return gap, trip

    @staticmethod
    def _learn_gap(car: CarState, gap: dict) -> None:
        hours, start, change = gap["hours"], gap["start_level"], gap["target"]
        car.gaps += 1
        if hours < MIN_GAP_HOURS:
            return
        if gap["charging"]:
            car.ceiling, car.ceiling_candidate, rate = charging_gap_learned(
                car.ceiling,
                car.ceiling_candidate,
                start_level=start,
                end_level=start + change,
                hours=hours,
                rate=car.charge,
            )
            if rate is not None:
                car.charge = _ema(car.charge, rate)
            return
        found = change >= FOUND_CHARGED_GAIN
        car.found_charged = _ema(car.found_charged, float(found))
        if not found:
            car.idle = _ema(car.idle, max(-change, 0.0) / hours)

    @staticmethod
    def _learn_trip(car: CarState, renter: RenterState | None, o: Outcome, hours: float) -> None:
        drain = (o.battery_at_start - o.battery_at_end) / max(hours, 0.25)
        topped_up = o.battery_at_end > o.battery_at_start + 1.0
        if not topped_up:
            car.drive = _ema(car.drive, drain)
        car.trips += 1
        car.plug = _ema(car.plug, float(o.charging_at_end))
        car.ever_plugged = car.ever_plugged or o.charging_at_end
        car.last_end, car.last_end_level, car.last_charging = o.end, o.battery_at_end, o.charging_at_end
        if renter is None:
            return
        chargeable = car.ever_plugged if o.car_chargeable is None else o.car_chargeable
        if chargeable:
            # Only a return to a car that can charge says whether this renter plugs in: one left unplugged at a
            # station without a charger says nothing, and counting it would read an always-plugging renter who
            # drives such cars a quarter of the time as plugging three returns in four.
            renter.plug = _share(renter.plug, float(o.charging_at_end), renter.plug_returns + 1)
            renter.plug_returns += 1
        if not topped_up:
            if renter.drive is None:
                renter.drive = drain
            else:
                diff = drain - renter.drive
                renter.drive += ALPHA * diff
                renter.drive_var = (1 - ALPHA) * (renter.drive_var + ALPHA * diff * diff)
        renter.topup = _ema(renter.topup, float(topped_up))
        renter.trips += 1


def replay(outcomes: Iterable[Outcome], readings: Iterable[Reading] = ()) -> tuple[list[dict], list[dict], FeatureBook]:
    """Gap and trip rows of a whole history (sorted by return time), point in time.

    Each row carries `at` (when the segment starts) and `end` (when its outcome is known), so a
    time-based holdout can keep every row whose outcome falls after the cut out of training.
    A reading strictly inside a parked gap adds a gap row from that reading to the pick-up
    (with `since_return`), as serving starts from such readings; it teaches the car's rates nothing.
    """
    book = FeatureBook()
    gaps, trips = [], []
    by_car: dict[str, list[tuple[datetime, float]]] = {}
    for r in readings:
        by_car.setdefault(r.vehicle_id, []).append((r.at, r.level))
    for car_readings in by_car.values():
        car_readings.sort()
    for o in sorted(outcomes, key=lambda o: (o.end, o.vehicle_id)):
        gaps += _mid_gap_rows(book.car(o.vehicle_id), by_car.get(o.vehicle_id, ()), o)
        gap, trip = book.observe(o)
        if gap is not None:
            gap["at"] = gap["end"] = o.start  # the gap ends at the pick-up: its outcome is known then
            gaps.append(gap)
        trip["at"], trip["end"] = o.start, o.end  # a trip's outcome is known only at its return
        trips.append(trip)
    return gaps, trips, book


def _mid_gap_rows(car: CarState, readings: list[tuple[datetime, float]], o: Outcome) -> list[dict]:
    """Gap rows from the car's readings strictly between its last return and this pick-up.

    At most MID_GAP_ROWS per gap, at least MID_GAP_SPACING_HOURS apart.
    """
    if car.last_end is None or car.last_end_level is None or not readings or o.start <= car.last_end:
        return []
    rows: list[dict] = []
    kept: datetime | None = None
    first = bisect.bisect_right(readings, (car.last_end, math.inf))
    for at, level in readings[first:]:
        if at >= o.start or len(rows) >= MID_GAP_ROWS:
            break
        if kept is not None and _hours(kept, at) < MID_GAP_SPACING_HOURS:
            continue  # a client polling /predict would otherwise fill training with near-copies of one gap
        kept = at
        row = gap_row(
            car,
            start=at,
            end=o.start,
            start_level=level,
            charging=bool(car.last_charging),
            since_return=_hours(car.last_end, at),
        )
        row["target"] = o.battery_at_start - level
        row["at"] = row["end"] = o.start
        rows.append(row)
    return rows
