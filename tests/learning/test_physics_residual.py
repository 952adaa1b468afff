"""The gap and trip models on the residual of the car's own physics: the baseline, the charge ceiling, extrapolation.

A model trained on the default simulated world only must follow a car it never saw the like of: a charger far
slower than any simulated one, or a car that stops charging at 80 %.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from io import StringIO
from itertools import pairwise

import pytest
from django.core.management import call_command

from core import gbm
from core.ema import ALPHA, charge_ceiling_update, charging_gap_learned, charging_rate_from_gap
from core.features import (
    FEATURES,
    PHYSICS,
    CarState,
    FeatureBook,
    Outcome,
    RenterState,
    gap_physics,
    gap_row,
    replay,
    trip_physics,
    trip_row,
)
from core.physics import DEFAULT_CHARGE, DEFAULT_DRIVE, DEFAULT_IDLE_DRAIN, charge_level
from learning.champion import artifact_path, champion_model
from learning.models import ModelStatus, ModelVersion
from learning.training import segment_frames
from tests.modelling import SMALL_FLEET, champion_serve, fleet_outcomes, outcomes_store
from tests.seed_examples import URL

T0 = datetime(2026, 3, 2, 8, tzinfo=UTC)


# --- the physics baseline (pure) ----------------------------------------------------------------


def test_charging_stops_at_the_ceiling_and_a_car_above_it_keeps_its_level():
    assert charge_level(40.0, 20.0, 1.0, 80.0) == pytest.approx(60.0)  # below it, as without one
    assert charge_level(40.0, 20.0, 10.0, 80.0) == 80.0
    assert charge_level(70.0, 20.0, 5.0, 90.0) == 90.0  # in the taper, still stops at it
    assert charge_level(85.0, 20.0, 5.0, 80.0) == 85.0  # plugged in above its limit: held, not drained
    assert charge_level(40.0, 20.0, 10.0) == charge_level(40.0, 20.0, 10.0, 100.0) > 99.0


def test_a_car_with_no_history_gets_the_fleet_defaults_and_no_ceiling():
    car, renter = CarState(), RenterState()

    assert gap_physics(car, hours=2.0, start_level=40.0, charging=True) == pytest.approx(2 * DEFAULT_CHARGE)
    assert gap_physics(car, hours=10.0, start_level=50.0, charging=False) == pytest.approx(-10 * DEFAULT_IDLE_DRAIN)
    assert gap_physics(car, hours=30.0, start_level=10.0, charging=True) > 89.0  # full: no ceiling shown
    assert trip_physics(car, renter, hours=2.0, start_level=60.0) == pytest.approx(-2 * DEFAULT_DRIVE)


def test_the_baseline_uses_the_cars_and_renters_own_rates_and_never_goes_below_empty():
    car = CarState(charge=3.0, idle=1.5, ceiling=80.0, drive=10.0)

    assert gap_physics(car, hours=10.0, start_level=30.0, charging=True) == pytest.approx(30.0)
    assert gap_physics(car, hours=10.0, start_level=60.0, charging=True) == pytest.approx(20.0)  # to its ceiling
    assert gap_physics(car, hours=10.0, start_level=20.0, charging=False) == pytest.approx(-15.0)
    assert gap_physics(car, hours=40.0, start_level=20.0, charging=False) == pytest.approx(-20.0)
    renter = RenterState(drive=20.0)
    assert trip_physics(car, renter, hours=2.0, start_level=60.0) == pytest.approx(-30.0)  # the mean of both
    assert trip_physics(car, renter, hours=5.0, start_level=60.0) == pytest.approx(-60.0)


def test_every_row_carries_its_physics_and_the_ceiling_in_the_models_column_order():
    car = CarState(charge=5.0, ceiling=90.0)
    gap = gap_row(car, start=T0, end=T0 + timedelta(hours=4), start_level=50.0, charging=True)
    trip = trip_row(car, RenterState(), start=T0, end=T0 + timedelta(hours=1), start_level=50.0)

    assert gap[PHYSICS] == pytest.approx(20.0) and gap["car_ceiling"] == 90.0
    assert trip[PHYSICS] == pytest.approx(-DEFAULT_DRIVE)
    assert set(FEATURES["gap"]) == set(gap) and set(FEATURES["trip"]) == set(trip)
    assert gbm.FEATURES is FEATURES  # one definition for training, serving, artifacts and the drift check


# --- learning the charge ceiling (pure) ---------------------------------------------------------


def _flattened(ceiling, candidate, start, end, hours=20.0, rate=10.0):
    return charge_ceiling_update(ceiling, candidate, start_level=start, end_level=end, hours=hours, rate=rate)


def test_two_charges_that_flattened_at_the_same_level_show_a_ceiling():
    ceiling, candidate = _flattened(None, None, 30.0, 80.0)
    assert (ceiling, candidate) == (None, 80.0)  # once could be a slow charge
    ceiling, candidate = _flattened(ceiling, candidate, 45.0, 80.4, hours=9.0)
    assert ceiling == pytest.approx(80.2)
    ceiling, _ = _flattened(ceiling, candidate, 20.0, 80.0)
    assert 80.0 < ceiling < 80.2  # an EMA of where it stops


def test_a_slow_chargers_stops_wander_and_show_no_ceiling():
    ceiling, candidate = None, None
    for start, end, hours in [(30.0, 52.0, 10.0), (20.0, 61.0, 20.0), (40.0, 70.0, 16.0), (35.0, 57.0, 12.0)]:
        ceiling, candidate = _flattened(ceiling, candidate, start, end, hours=hours, rate=DEFAULT_CHARGE)
    assert ceiling is None


def test_a_charge_that_did_not_flatten_or_reached_full_or_passed_the_ceiling_says_so():
    assert _flattened(80.0, 80.0, 30.0, 60.0, hours=3.0) == (80.0, 80.0)  # on its way at its rate: nothing new
    assert _flattened(80.0, 80.0, 30.0, 99.5) == (None, None)  # full: no ceiling
    assert _flattened(80.0, 80.0, 30.0, 86.0, hours=3.0) == (None, None)  # above it: the limit was lifted
    assert _flattened(None, None, 30.0, 45.0) == (None, None)  # below any limit anyone sets
    assert _flattened(80.0, 80.0, 85.0, 85.0) == (80.0, 80.0)  # held above its limit


def test_a_charge_that_stopped_at_the_ceiling_teaches_no_rate():
    assert charging_rate_from_gap(30.0, 80.0, 10.0, ceiling=80.0) is None  # only bounded from below
    assert charging_rate_from_gap(30.0, 60.0, 3.0, ceiling=80.0) == pytest.approx(10.0, abs=1e-6)
    assert charging_rate_from_gap(30.0, 80.0, 10.0) == pytest.approx(5.0, abs=1e-6)  # no ceiling known


def test_a_gap_that_stopped_at_the_ceiling_or_full_bounds_the_rate_from_below():
    # the rate that reaches the stop (a point under the ceiling, or 99) in the gap, when above the learned one
    assert charging_gap_learned(80.0, 80.0, start_level=40.0, end_level=80.0, hours=2.0, rate=5.0)[2] == (
        pytest.approx(19.5)
    )
    assert charging_gap_learned(80.0, 80.0, start_level=40.0, end_level=80.0, hours=10.0, rate=5.0)[2] is None
    to_99 = charging_gap_learned(None, None, start_level=40.0, end_level=100.0, hours=2.0, rate=5.0)[2]
    assert charge_level(40.0, to_99, 2.0) == pytest.approx(99.0)  # through the taper
    # none learned yet: the default's rate serves until a charge shows the car's own
    assert charging_gap_learned(80.0, 80.0, start_level=40.0, end_level=80.0, hours=2.0, rate=None)[2] is None
    # a charge below the ceiling is a rate, as before; a car held above its ceiling says nothing
    assert charging_gap_learned(80.0, 80.0, start_level=30.0, end_level=60.0, hours=3.0, rate=5.0)[2] == (
        pytest.approx(10.0, abs=1e-6)
    )
    assert charging_gap_learned(80.0, 80.0, start_level=85.0, end_level=85.0, hours=3.0, rate=5.0)[2] is None


def limited_history(car: str, *, ceiling: float = 80.0, rate: float = 10.0, days: int = 12) -> list[Outcome]:
    """A car that charges at `rate` and stops at `ceiling`: returned at 40 % and left plugged in, picked up
    after 3 hours (40 + 3 rate) or after 20 (at its ceiling)."""
    outcomes, at = [], T0
    for i in range(days):
        gap = 3.0 if i % 2 else 20.0
        level = 40.0 if i == 0 else min(40.0 + rate * gap, ceiling)
        outcomes.append(Outcome(car, "u1", at, at + timedelta(hours=2), level, 40.0, True))
        at += timedelta(hours=2 + (20.0 if i % 2 else 3.0))
    return outcomes


def test_replaying_a_limited_car_learns_its_ceiling_and_its_rate_from_the_charges_below_it():
    _, _, book = replay(limited_history("c80"))
    car = book.car("c80")

    assert car.ceiling == pytest.approx(80.0)
    assert car.charge == pytest.approx(10.0, abs=1.0)  # the stops at 80 no longer drag it down
    _, _, full = replay(limited_history("c100", ceiling=100.0, rate=5.0))
    assert full.car("c100").ceiling is None


def test_replaying_a_fast_car_that_always_stops_at_its_limit_moves_its_rate_up_to_what_its_short_charges_show():
    """A 30-points-an-hour car that stops at 80 reaches it in every gap, of 3 hours or of 20."""
    _, _, book = replay(limited_history("fast", rate=30.0))
    car = book.car("fast")

    assert car.ceiling == pytest.approx(80.0)
    # Read as rates before the limit was confirmed: 40 / 3, 40 / 20, 40 / 3. Each later 3-hour charge shows at least
    # 13 (39 / 3, to a point under the limit) and moves the rate a step towards that, never past it; before, it
    # stayed where the confirmation left it.
    confirmed = 40 / 3
    for rate in (2.0, 40 / 3):
        confirmed += ALPHA * (rate - confirmed)
    assert car.charge == pytest.approx(13.0 - (13.0 - confirmed) * (1 - ALPHA) ** 4, rel=1e-6)


# --- a model trained on the default world, served far outside it ---------------------------------


@pytest.fixture
def trained():
    gaps, trips = segment_frames(list(fleet_outcomes(SMALL_FLEET)))
    return gbm.train("test", gaps, trips, rounds=60).model, gaps


def _charging_gap(model: gbm.GapTripModel, car: CarState, start: float, hours: float) -> tuple[float, float]:
    from core import ml_cascade

    book = FeatureBook()
    book.cars["c1"] = car
    trace = [("gap", T0, T0 + timedelta(hours=hours), start, 1.0, True), ("target", 0)]
    [point] = ml_cascade.compose(model, trace, car_id="c1", book=book, fleet_plug=0.3, start_std=0.0)
    return point.level, point.upper


def test_a_charger_far_slower_than_any_trained_on_gains_its_own_rate(trained):
    model, gaps = trained
    slowest = gaps.loc[gaps["charging"] == 1.0, "car_charge"].min()
    car = CarState(charge=1.5, idle=0.1, gaps=30, trips=30, plug=0.9, ever_plugged=True)
    assert car.charge < slowest / 2

    level, _ = _charging_gap(model, car, 30.0, 10.0)

    assert level == pytest.approx(30.0 + 1.5 * 10.0, abs=4.0)  # not the simulated chargers' gain
    gained = gaps[(gaps["charging"] == 1.0) & (gaps["hours"].between(8, 12)) & (gaps["start_level"] < 50)]
    assert gained["target"].median() > 30.0  # what a simulated car gains in such a gap


def test_a_car_limited_to_80_is_not_charged_past_it(trained):
    model, _ = trained
    car = CarState(charge=15.0, idle=0.1, ceiling=80.0, gaps=30, trips=30, plug=0.9, ever_plugged=True)

    level, upper = _charging_gap(model, car, 30.0, 10.0)
    assert 77.0 <= level <= 80.0 and upper <= 80.0
    assert _charging_gap(model, car, 85.0, 10.0)[0] == pytest.approx(85.0, abs=1.0)  # above it: held

    unlimited = CarState(charge=15.0, idle=0.1, gaps=30, trips=30, plug=0.9, ever_plugged=True)
    assert _charging_gap(model, unlimited, 30.0, 10.0)[0] > 90.0


@pytest.mark.django_db
def test_predict_follows_a_limited_and_a_slow_cars_own_physics_through_the_api(post, settings, tmp_path):
    settings.MODEL_DIR = tmp_path
    champion = champion_serve()  # the default simulated world only
    slow = []
    at = T0
    for i in range(8):  # 2 points an hour, left plugged in at 40 % each time
        hours = 6.0 if i % 2 else 14.0
        level = 40.0 if i == 0 else 40.0 + 2.0 * (14.0 if i % 2 else 6.0)
        slow.append(Outcome("SLOW", "u2", at, at + timedelta(hours=2), level, 40.0, True))
        at += timedelta(hours=2 + hours)
    outcomes_store([*limited_history("LIM80"), *slow])

    def predict(car: str, last: Outcome, hours: float) -> dict:
        body = {
            "vehicle_id": car,
            "booking_start_time": (last.end + timedelta(hours=hours)).isoformat(),
            "current_battery_level": last.battery_at_end,
            "current_timestamp": last.end.isoformat(),
        }
        response = post(URL["predict"], body)
        assert response.status_code == 200, response.json()
        return response.json()

    limited = predict("LIM80", limited_history("LIM80")[-1], 12.0)
    assert limited["model_version"] == champion.version and limited["served_by"] == "model"
    assert 75.0 <= limited["predicted_battery_percentage"] <= 80.0
    assert limited["confidence_interval"]["upper"] <= 80.0

    crawling = predict("SLOW", slow[-1], 10.0)
    assert crawling["served_by"] == "model"
    assert crawling["predicted_battery_percentage"] == pytest.approx(40.0 + 2.0 * 10.0, abs=5.0)


# --- artifacts of the release before the residual -------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("older", ["no_target", "no_physics_features"])
def test_an_artifact_that_learned_the_change_itself_is_refused_and_replaced_at_make_run(
    older, post, settings, tmp_path
):
    settings.MODEL_DIR = tmp_path
    champion = champion_serve()
    path = artifact_path(champion)
    artifact = json.loads(path.read_text())
    if older == "no_target":
        del artifact["target"]  # the same features, but its boosters predict the change: physics would count twice
    else:
        artifact.pop("target")
        for kind in ("gap", "trip"):
            artifact["features"][kind] = [n for n in artifact["features"][kind] if n not in (PHYSICS, "car_ceiling")]
    path.write_text(json.dumps(artifact))
    ModelVersion.objects.filter(pk=champion.pk).update(artifact_sha256=hashlib.sha256(path.read_bytes()).hexdigest())

    with pytest.raises(gbm.ArtifactMismatch):
        gbm.GapTripModel.load(path)
    assert champion_model() is None
    served = post(URL["predict"], {**_PREDICT, "vehicle_id": "V1"})
    assert served.status_code == 200 and served.json()["prediction_method"].startswith("pattern_")

    out = StringIO()
    small = {"cars": SMALL_FLEET.cars, "renters": SMALL_FLEET.renters, "days": SMALL_FLEET.days, "seed": 5}
    call_command("train_model", synthetic=True, if_missing=True, stdout=out, stderr=StringIO(), **small)

    assert "other features or another target" in out.getvalue()
    serving = ModelVersion.objects.get(status=ModelStatus.CHAMPION)
    assert serving != champion and champion_model().version == serving.version


_PREDICT = {
    "booking_start_time": "2025-11-03T19:00:00Z",
    "current_battery_level": 50.0,
    "current_timestamp": "2025-11-03T17:00:00Z",
}


def test_limited_history_is_what_it_says():
    history = limited_history("c", days=4)
    gaps = [(b.start - a.end).total_seconds() / 3600 for a, b in pairwise(history)]
    assert gaps == [3.0, 20.0, 3.0] and [o.battery_at_start for o in history] == [40.0, 70.0, 80.0, 70.0]
