"""Champion and challenger priced as served: whole cascades over the fleet's newest bookings.

Segment rows (one gap, one trip) are not what a renter is shown. The service starts from the
car's last known state, its previous return's level and plug state, and composes every gap and
trip to the booking through `core.ml_cascade` (Monte Carlo over the schedule). So a
retrain replays the recorded outcomes in time order and, at each car's return, prices its next
`DEPTH` bookings as one cascade, as a `booking-ended` event with those bookings scheduled would:
each held-out booking is priced at the return of the booking 1, 2 and 3 before it. The features
are point in time (`core.features.FeatureBook`, only outcomes returned by then), the walk's
rates are the car's learned ones shrunk towards the fleet's (they only lay out the schedule and
add one starting level to each segment's grid), and every model is priced on the same plans with
the same Monte Carlo seed as serving (0), so two models differ only by their boosters.

The bookings are the recorded ones at their actual times: a replay of outcomes knows neither the
platform's announced schedule nor the bookings that were cancelled, nor the readings that a
real-time `/predict` starts from.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, replace
from datetime import datetime

import numpy as np

from core import ml_cascade
from core.ema import shrink
from core.features import CarState, FeatureBook, Outcome, RenterState, car_ceiling, plug_probability
from core.gbm import GapTripModel
from core.physics import Rates, State, Trip, walk

DEPTH = 3  # a booking is priced at the return of each of the DEPTH bookings before it
# The walk's rates for a car with no history of a kind: the service's cold-start fleet prior
# (`learning.selectors.FleetPrior`); a car's own EMA is shrunk towards it with the same strength.
_IDLE, _CHARGE, _DRIVE, _PLUG, _STRENGTH = 0.15, 12.0, 9.0, 0.3, 3.0
_FLEET_PLUG_STRENGTH = 10.0


@dataclass(frozen=True)
class Cascade:
    """One cascade as served: the car's state at a return and the bookings it then prices."""

    car_id: str
    made_at: datetime  # the return the prediction is made at
    start_level: float
    trace: list[tuple]
    book: FeatureBook  # the car's and the renters' features at `made_at`
    fleet_plug: float  # the renters' plugging habit on cars that can charge (`FleetPrior.plug_habit`)
    targets: list[tuple[datetime, float, int, bool]]  # (pick-up, actual level, depth, in the holdout)


def _rates(car: CarState, fleet_plug: float) -> Rates:
    return Rates(
        idle_drain=max(shrink(car.idle, car.gaps, _IDLE, _STRENGTH), 0.0),
        idle_std=0.15,
        charge=max(shrink(car.charge, car.gaps, _CHARGE, _STRENGTH), 0.5),
        charge_std=4.0,
        drive=max(shrink(car.drive, car.trips, _DRIVE, _STRENGTH), 0.0),
        drive_std=5.0,
        plug_probability=shrink(car.plug, car.trips, fleet_plug, _STRENGTH),
        ceiling=car_ceiling(car),
    )


def _trip(car: CarState, renter: RenterState, o: Outcome, name: str, fleet_habit: float, rates: Rates) -> Trip:
    drive = rates.drive if renter.drive is None else 0.5 * rates.drive + 0.5 * max(renter.drive, 0.0)
    return Trip(name, o.start, o.end, drive, rates.drive_std, plug_probability(car, renter, fleet_habit), o.user_id)


class _FleetPlugging:
    """The fleet's shares of returns left plugged in, kept as the outcomes are replayed, as `FleetPrior` counts
    them: over every car (`plug_probability`, a car's prior) and over the cars seen charging so far, every return
    of such a car, those before its first charge too (`plug_habit`, what a renter's habit is shrunk towards)."""

    def __init__(self) -> None:
        self.charges: dict[str, int] = defaultdict(int)
        self.returns: dict[str, int] = defaultdict(int)
        self.chargeable: set[str] = set()
        self.all = [0, 0]  # charges, returns
        self.on_chargeable = [0, 0]

    def observe(self, o: Outcome, car: CarState) -> None:
        plugged = int(o.charging_at_end)
        self.charges[o.vehicle_id] += plugged
        self.returns[o.vehicle_id] += 1
        self.all[0] += plugged
        self.all[1] += 1
        if o.vehicle_id in self.chargeable:
            self.on_chargeable[0] += plugged
            self.on_chargeable[1] += 1
        elif car.ever_plugged:
            self.chargeable.add(o.vehicle_id)
            self.on_chargeable[0] += self.charges[o.vehicle_id]
            self.on_chargeable[1] += self.returns[o.vehicle_id]

    def every_car(self) -> float:
        return self._share(*self.all)

    def cars_that_charge(self) -> float:
        return self._share(*self.on_chargeable)

    @staticmethod
    def _share(charges: int, returns: int) -> float:
        return shrink(charges / returns if returns else None, returns, _PLUG, _FLEET_PLUG_STRENGTH)


def holdout_cascades(outcomes: list[Outcome], cut_at: datetime, depth: int = DEPTH) -> list[Cascade]:
    """Every cascade made at a car's return that prices at least one booking picked up at or after `cut_at`."""
    ordered = sorted(outcomes, key=lambda o: (o.end, o.vehicle_id))
    by_car: dict[str, list[Outcome]] = defaultdict(list)
    for o in sorted(outcomes, key=lambda o: (o.start, o.end)):
        by_car[o.vehicle_id].append(o)
    position = {id(o): i for car in by_car.values() for i, o in enumerate(car)}
    book = FeatureBook()
    plugging = _FleetPlugging()
    cascades = []
    for o in ordered:
        book.observe(o)
        plugging.observe(o, book.car(o.vehicle_id))
        schedule = by_car[o.vehicle_id]
        nxt, cursor = [], o.end
        for later in schedule[position[id(o)] + 1 : position[id(o)] + 1 + depth]:
            if later.start < cursor:  # overlapping records: not a schedule the service could have had
                break
            nxt.append(later)
            cursor = later.end
        if not any(later.start >= cut_at for later in nxt):
            continue
        fleet_plug = plugging.every_car()
        car = book.car(o.vehicle_id)
        snapshot = FeatureBook(
            cars={o.vehicle_id: replace(car)}, renters={u: replace(book.renter(u)) for u in {x.user_id for x in nxt}}
        )
        rates = _rates(car, fleet_plug)
        fleet_habit = plugging.cars_that_charge()
        trips = [
            _trip(car, snapshot.renter(x.user_id), x, f"{o.vehicle_id}:{k}", fleet_habit, rates)
            for k, x in enumerate(nxt)
        ]
        trace: list[tuple] = []
        state = State(level=o.battery_at_end, at=o.end, charging=o.charging_at_end)
        walk(state, trips, [(t.booking_id, t.start) for t in trips], rates, with_steps=False, trace=trace)
        targets = [(x.start, x.battery_at_start, k + 1, x.start >= cut_at) for k, x in enumerate(nxt)]
        cascades.append(Cascade(o.vehicle_id, o.end, o.battery_at_end, trace, snapshot, fleet_habit, targets))
    return cascades


@dataclass(frozen=True)
class PricedBooking:
    """One held-out booking's prediction at one depth."""

    car_id: str
    pickup: datetime
    made_at: datetime
    depth: int
    actual: float
    level: float
    lower: float
    upper: float
    persistence: float


def cascade_price(model: GapTripModel, cascades: list[Cascade]) -> list[PricedBooking]:
    """Each cascade through `ml_cascade.compose` with `model`, as serving composes it; the held-out targets."""
    priced = []
    for c in cascades:
        points = ml_cascade.compose(
            model, c.trace, car_id=c.car_id, book=c.book, fleet_plug=c.fleet_plug, start_std=0.0
        )
        for point, (pickup, actual, depth, scored) in zip(points, c.targets, strict=True):
            if scored:
                priced.append(
                    PricedBooking(
                        c.car_id, pickup, c.made_at, depth, actual, point.level, point.lower, point.upper, c.start_level
                    )
                )
    return priced


def cascade_metrics(priced: list[PricedBooking]) -> dict:
    """MAE, bias, within 10 and 95 % coverage over every (booking, depth), and the MAE per depth."""
    if not priced:
        return {"bookings": 0, "predictions": 0}
    err = np.array([p.level - p.actual for p in priced])
    actual = np.array([p.actual for p in priced])
    lower, upper = np.array([p.lower for p in priced]), np.array([p.upper for p in priced])
    figures = {
        "bookings": len({(p.car_id, p.pickup) for p in priced}),
        "predictions": len(priced),
        "mae": round(float(np.mean(np.abs(err))), 3),
        "bias": round(float(np.mean(err)), 3),
        "within_10": round(float(np.mean(np.abs(err) <= 10)), 4),
        "coverage_95": round(float(np.mean((actual >= lower - 1e-9) & (actual <= upper + 1e-9))), 4),
        "persistence_mae": round(float(np.mean([abs(p.persistence - p.actual) for p in priced])), 3),
    }
    for depth in sorted({p.depth for p in priced}):
        e = [abs(p.level - p.actual) for p in priced if p.depth == depth]
        figures[f"mae_depth_{depth}"] = round(float(np.mean(e)), 3) if e else math.nan
    return figures
