"""Shadow scoring: every candidate is scored on the fleet's own pick-ups, and the best one serves each kind."""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from core.simulation.fleet import FleetConfig, simulate
from learning.training import model_promote, model_train
from predictions.models import Prediction, PredictorScore
from predictions.shadow import (
    DECAY,
    LOW_LEVEL,
    MIN_BOOKINGS,
    POOLING,
    Score,
    booking_errors,
    candidate_levels,
    candidate_serving,
    kind_levels,
    pooled_mae,
    shadow_kind,
    shadow_learn,
    shadow_report,
)
from tests.modelling import SMALL_FLEET, SMALL_ROUNDS, fleet_outcomes
from tests.seed_examples import CREATED, STARTED, URL

PREDICT = {
    "vehicle_id": "78",
    "booking_start_time": "2025-11-03T19:00:00Z",
    "current_battery_level": 50.0,
    "current_timestamp": "2025-11-03T17:00:00Z",
}

pytestmark = pytest.mark.django_db


def slow_charging(outcomes, factor: float = 0.25):
    """The same fleet in a world whose chargers are `factor` as fast: every parked gain shrinks, and the levels
    of the later bookings follow."""
    by_car = defaultdict(list)
    for o in outcomes:
        by_car[o.vehicle_id].append(o)
    shifted = []
    for car in by_car.values():
        car.sort(key=lambda o: o.start)
        prev_true = prev_new = None
        for o in car:
            start = o.battery_at_start
            if prev_true is not None:
                change = o.battery_at_start - prev_true
                start = prev_new + (change * factor if change > 0 else change)
            start = min(100.0, max(0.0, start))
            end = min(100.0, max(0.0, start - (o.battery_at_start - o.battery_at_end)))
            shifted.append(dataclasses.replace(o, battery_at_start=start, battery_at_end=end))
            prev_true, prev_new = o.battery_at_end, end
    return shifted


@pytest.fixture
def post_committed(post, django_capture_on_commit_callbacks):
    """POST as a committed request would: the scores are written after the event's commit."""

    def _post(url, body):
        with django_capture_on_commit_callbacks(execute=True):
            return post(url, body)

    return _post


def test_a_champion_from_a_world_with_four_times_slower_chargers_loses_to_the_pattern_cascade(
    post_committed, settings, tmp_path
):
    settings.MODEL_DIR = tmp_path
    wrong = model_train(
        outcomes=slow_charging(fleet_outcomes(SMALL_FLEET)), source="synthetic:slow", rounds=SMALL_ROUNDS
    )
    model_promote(version=wrong.version)

    for call in simulate(FleetConfig(cars=10, renters=30, days=20, seed=5)).calls:  # a fleet it was not built on
        assert post_committed(call.path, call.body).status_code == 200

    report = {row["kind"]: row for row in shadow_report(model_available=True)}
    fleet = report["*"]
    assert fleet["candidates"]["model"]["bookings"] < 300  # a few hundred scored bookings at most
    assert fleet["serving"] == "pattern"
    assert fleet["candidates"]["model"]["mae"] > fleet["candidates"]["pattern"]["mae"]
    charging = [row for kind, row in report.items() if kind.endswith("|charging")]
    assert charging and all(row["serving"] == "pattern" for row in charging)
    # What was served once the scores had spoken: the later half of the scored predictions of cars left charging.
    scored = list(Prediction.objects.filter(shadow_kind__endswith="|charging", actual_battery__isnull=False))
    late = sorted(scored, key=lambda p: p.id)[len(scored) // 2 :]
    by_pattern = sum(p.served_by == "pattern" for p in late) / len(late)
    served = sum(abs(p.actual_battery - p.predicted_battery) for p in late) / len(late)
    champion = sum(abs(p.actual_battery - p.model_level) for p in late) / len(late)
    assert by_pattern >= 0.85
    assert served < 0.5 * champion
    # A prediction served by the pattern cascade beside a champion shows the pattern walk's steps, which end at it.
    walked = [p for p in late if p.served_by == "pattern" and p.cascade_steps]
    assert walked and all(
        p.cascade_steps[-1]["battery_after"] == pytest.approx(p.predicted_battery, abs=0.011) for p in walked
    )


def test_a_pick_up_scores_every_candidate_with_what_it_said_before(post_committed):
    post = post_committed
    post(URL["created"], CREATED)
    prediction = Prediction.objects.get(booking_external_id="BK123456", is_current=True)
    assert (prediction.served_by, prediction.model_level) == ("pattern", None)  # no champion: the pattern serves
    assert prediction.persistence_level == 65.5

    post(URL["started"], STARTED)

    actual = STARTED["actual_battery_at_start"]
    scores = {(s.kind, s.candidate): s for s in PredictorScore.objects.all()}
    assert {k for k, _ in scores} == set(kind_levels(prediction.shadow_kind))
    for level in kind_levels(prediction.shadow_kind):
        assert scores[(level, "pattern")].mae == pytest.approx(abs(actual - prediction.pattern_level))
        assert scores[(level, "persistence")].mae == pytest.approx(abs(actual - 65.5))
        # No champion: the median of the two that ran is their mean.
        assert scores[(level, "median")].mae == pytest.approx(abs(actual - (prediction.pattern_level + 65.5) / 2))
        assert scores[(level, "pattern")].bookings == 1
    assert (level, "model") not in scores


def score(mae: float, bookings: int = MIN_BOOKINGS) -> Score:
    return Score(mae=mae, bookings=bookings, weight=float(bookings))


def test_a_car_not_known_to_be_charging_and_last_seen_low_has_a_kind_of_its_own():
    present = datetime(2026, 3, 2, 8, tzinfo=UTC)
    target = present + timedelta(hours=10)

    def kind(charging: bool | None, level: float | None) -> str:
        return shadow_kind(own=True, present=present, target=target, charging=charging, level=level)

    assert kind(False, LOW_LEVEL - 0.5) == "6-24h|own|parked-low"
    assert kind(None, 3.0) == "6-24h|own|unknown-low"
    assert kind(False, LOW_LEVEL) == "6-24h|own|parked"
    assert kind(True, 3.0) == "6-24h|own|charging"  # a car left charging is not waiting for staff
    assert kind(False, None) == "6-24h|own|parked"
    assert kind_levels(kind(False, 3.0)) == ("6-24h|own|parked-low", "6-24h", "*")


KIND = "6-24h|own|parked"
LEAD = "6-24h"
ALL = ("model", "pattern", "persistence", "median")


def levels(kind: int, lead: int, fleet: int, *, mae: dict[str, tuple[float, float, float]]) -> dict:
    """Scores at the kind, its lead time and the fleet, each level with its own number of bookings."""
    return {
        (level, c): score(m, n)
        for c, maes in mae.items()
        for level, m, n in zip((KIND, LEAD, "*"), maes, (kind, lead, fleet), strict=True)
        if n
    }


@pytest.mark.parametrize(
    ("scores", "serving"),
    [
        ({}, "model"),  # nothing scored yet: the default
        # A new champion's trial: the fleet has scored it on too few bookings, so it serves, however it does.
        (levels(20, 25, MIN_BOOKINGS - 1, mae={"model": (10, 10, 10), "pattern": (2, 2, 2)}), "model"),
        # Well scored everywhere: the better candidate serves, unless it is within the switch margin.
        (levels(100, 200, 400, mae={"model": (10, 10, 10), "pattern": (5, 5, 5)}), "pattern"),
        (levels(100, 200, 400, mae={"model": (10, 10, 10), "pattern": (9.6, 9.6, 9.6)}), "model"),
        (
            levels(100, 200, 400, mae={"model": (10, 8, 8), "pattern": (6, 8, 8), "persistence": (5, 9, 9)}),
            "persistence",
        ),
        # A kind of its own: a lead time where the model is the better does not hide a kind where it is far worse,
        # once a few of the kind's bookings show it...
        (levels(8, 200, 400, mae={"model": (25, 3, 3), "pattern": (1, 3.5, 3.5)}), "pattern"),
        # ...but one booking is not enough to overrule its lead time's record.
        (levels(1, 200, 400, mae={"model": (5, 3, 3), "pattern": (1, 4, 4)}), "model"),
        # A kind with no record of its own follows its lead time's, and a lead time with none the fleet's.
        (levels(0, 200, 400, mae={"model": (0, 10, 4), "pattern": (0, 5, 4)}), "pattern"),
        (levels(0, 0, 400, mae={"model": (0, 0, 10), "persistence": (0, 0, 5)}), "persistence"),
        # The median is a candidate like the others: it serves where its record is the best by the margin.
        (levels(100, 200, 400, mae={"model": (10, 9, 9), "pattern": (9, 9, 9), "median": (7, 8, 8)}), "median"),
    ],
)
def test_which_candidate_serves(scores, serving):
    assert candidate_serving(scores, kind=KIND, available=ALL, default="model") == serving


def test_pooling_weighs_each_level_by_its_bookings():
    scores = levels(30, 20, 400, mae={"pattern": (2.0, 6.0, 10.0)})

    lead = (20 * 6.0 + POOLING * 10.0) / (20 + POOLING)  # the lead time's record, shrunk towards the fleet's
    assert pooled_mae(scores, kind=LEAD, candidate="pattern") == pytest.approx(lead)
    assert pooled_mae(scores, kind=KIND, candidate="pattern") == pytest.approx(
        (30 * 2.0 + POOLING * lead) / (30 + POOLING)
    )
    assert pooled_mae(scores, kind=KIND, candidate="model") is None


def test_without_a_champion_the_model_never_serves():
    scores = levels(100, 200, 400, mae={"model": (1, 1, 1), "pattern": (10, 10, 10), "persistence": (20, 20, 20)})

    assert candidate_serving(scores, kind=KIND, available=ALL[1:], default="pattern") == "pattern"


def test_model_info_shows_the_scores_and_what_serves_each_kind(api, post_committed):
    post = post_committed
    post(URL["created"], CREATED)
    post(URL["started"], STARTED)

    body = api.get("/api/v1/model/info").json()

    rows = {row["kind"]: row for row in body["shadow_scoring"]}
    assert rows["*"]["serving"] == "pattern"
    assert set(rows["*"]["candidates"]) == {"pattern", "persistence", "median"}
    assert rows["*"]["candidates"]["pattern"]["bookings"] == 1
    # One booking, the same error at every level: pooling it with itself changes nothing.
    [fine] = [kind for kind in rows if kind.count("|") == 2]
    for kind in (fine, fine.split("|")[0], "*"):
        pattern = rows[kind]["candidates"]["pattern"]
        assert pattern["pooled_mae"] == pytest.approx(pattern["mae"], abs=1e-3)


def test_the_models_page_shows_every_kinds_scores_and_what_serves_it(post_committed, admin_client):
    post = post_committed
    post(URL["created"], CREATED)
    post(URL["started"], STARTED)

    response = admin_client.get("/admin/dashboard/models/")

    rows = {row.kind: row for row in response.context["shadow"]}
    fleet = rows["*"]
    assert fleet.serving == "pattern"
    assert fleet.cells[0] is None  # no champion: the model candidate never ran
    assert fleet.cells[1]["bookings"] == 1 and fleet.cells[2]["bookings"] == 1
    html = response.content.decode()
    assert 'id="shadow-table"' in html and "<td>*</td>" in html


def test_the_scores_are_written_only_once_the_event_commits(post, django_capture_on_commit_callbacks):
    post(URL["created"], CREATED)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        post(URL["started"], STARTED)

    assert not PredictorScore.objects.exists()
    for callback in callbacks:
        callback()
    assert PredictorScore.objects.filter(kind="*", candidate="pattern", bookings=1).exists()


def test_a_prediction_for_a_moment_already_reached_is_not_scored(post_committed):
    """A late pick-up predicted from the level just reported would score persistence as perfect."""
    late = {
        "vehicle_id": "78",
        "booking_id": "BK123456",
        "booking_start_time": "2025-11-03T18:00:00Z",
        "current_battery_level": 61.0,
        "current_timestamp": "2025-11-03T19:00:00Z",
    }
    post_committed(URL["predict"], late)
    assert Prediction.objects.get(booking_external_id="BK123456", is_current=True).shadow_kind == ""

    post_committed(URL["started"], STARTED)

    assert not PredictorScore.objects.exists()


def test_a_cancelled_prediction_is_not_scored(post_committed):
    post_committed(URL["created"], CREATED)
    Prediction.objects.filter(booking_external_id="BK123456").update(status="cancelled")  # e.g. a no-show's

    post_committed(URL["started"], STARTED)

    assert not PredictorScore.objects.exists()


def test_a_new_champion_starts_without_its_predecessors_scores(settings, tmp_path):
    settings.MODEL_DIR = tmp_path
    PredictorScore.objects.create(kind="*", candidate="model", weight=40, sum_abs_error=400, bookings=40)
    PredictorScore.objects.create(kind="*", candidate="pattern", weight=40, sum_abs_error=100, bookings=40)

    row = model_train(outcomes=list(fleet_outcomes(SMALL_FLEET)), source="synthetic:3", rounds=SMALL_ROUNDS)
    model_promote(version=row.version)

    assert list(PredictorScore.objects.values_list("candidate", flat=True)) == ["pattern"]


def test_a_candidate_that_starts_serving_borrows_the_defaults_interval_margins(post, settings):
    from predictions.models import IntervalCalibration

    settings.CALIBRATION_CACHE_SECONDS = 0
    for candidate, mae in (("pattern", 10.0), ("persistence", 2.0)):
        PredictorScore.objects.create(kind="*", candidate=candidate, weight=30, sum_abs_error=30 * mae, bookings=30)
    body = {**PREDICT, "booking_id": "BK1"}
    before = post(URL["predict"], body).json()  # persistence serves, with no margins of its own yet
    assert before["served_by"] == "persistence"
    stored = Prediction.objects.get(prediction_id=before["prediction_id"])
    assert stored.calibration_key.startswith("persistence|predict|")
    default_key = stored.calibration_key.replace("persistence|", "pattern|", 1)
    IntervalCalibration.objects.create(key=default_key, margin_lower=7.0, margin_upper=7.0)

    after = post(URL["predict"], {**body, "booking_id": "BK2"}).json()

    assert after["served_by"] == "persistence"
    assert after["confidence_interval"]["lower"] == pytest.approx(before["confidence_interval"]["lower"] - 7, abs=0.02)
    assert after["confidence_interval"]["upper"] == pytest.approx(
        min(100.0, before["confidence_interval"]["upper"] + 7), abs=0.02
    )


def test_a_new_candidates_margins_start_from_those_it_borrowed_not_from_zero(post_committed, settings):
    """Adaptive conformal margins pay about margin / STEP misses while they climb: a row that started at 0 under
    a candidate whose margins had to reach 20 points lost coverage on every newly served kind."""
    from predictions.calibration import STEP, TAIL
    from predictions.models import IntervalCalibration
    from predictions.services import predictions_score
    from tests.factories import BookingFactory, VehicleFactory

    settings.CALIBRATION_CACHE_SECONDS = 0
    for candidate, mae in (("pattern", 10.0), ("persistence", 2.0)):
        PredictorScore.objects.create(kind="*", candidate=candidate, weight=30, sum_abs_error=30 * mae, bookings=30)
    BookingFactory(external_id="BK1", vehicle=VehicleFactory(external_id="78"))
    served = post_committed(URL["predict"], {**PREDICT, "booking_id": "BK1"}).json()
    stored = Prediction.objects.get(prediction_id=served["prediction_id"])
    assert stored.served_by == "persistence"
    default_key = stored.calibration_key.replace("persistence|", "pattern|", 1)
    IntervalCalibration.objects.create(key=default_key, margin_lower=20.0, margin_upper=12.0)

    # Scored with an actual inside the interval: each side narrows by STEP x TAIL from where it started.
    predictions_score(booking=stored.booking, actual=stored.predicted_battery, at_day=date(2025, 11, 3))

    row = IntervalCalibration.objects.get(key=stored.calibration_key)
    assert row.margin_lower == pytest.approx(20.0 - STEP * TAIL)
    assert row.margin_upper == pytest.approx(12.0 - STEP * TAIL)


def test_persistences_interval_also_holds_the_default_candidates(post, settings):
    """Persistence has no physics: a band around the old level alone misses a car that charges or drains far from
    it, where the default candidate expects it."""
    settings.CALIBRATION_CACHE_SECONDS = 0
    far = {**PREDICT, "booking_id": "BK1", "booking_start_time": "2025-11-05T05:00:00Z"}  # 36 h parked
    pattern = post(URL["predict"], far).json()
    for candidate, mae in (("pattern", 10.0), ("persistence", 2.0)):
        PredictorScore.objects.create(kind="*", candidate=candidate, weight=30, sum_abs_error=30 * mae, bookings=30)

    persisted = post(URL["predict"], {**far, "booking_id": "BK2"}).json()

    assert persisted["served_by"] == "persistence" and persisted["predicted_battery_percentage"] == 50.0
    expected, held = pattern["confidence_interval"], persisted["confidence_interval"]
    assert abs(pattern["predicted_battery_percentage"] - 50.0) > 1  # the default expects it elsewhere
    assert held["lower"] <= expected["lower"] and held["upper"] >= expected["upper"]
    # ... and the band around the carried level, as wide as the default's, is in it too.
    assert held["upper"] - held["lower"] > expected["upper"] - expected["lower"]


@pytest.mark.django_db
def test_a_pick_up_decays_the_scores_it_adds_to_and_creates_the_missing_ones(django_capture_on_commit_callbacks):
    at = datetime(2026, 1, 5, tzinfo=UTC)
    PredictorScore.objects.create(kind="*", candidate="pattern", weight=10.0, sum_abs_error=50.0, bookings=12)
    PredictorScore.objects.create(kind="*", candidate="model", weight=10.0, sum_abs_error=50.0, bookings=12)

    with django_capture_on_commit_callbacks(execute=True):
        shadow_learn(
            scored=[("6-24h|own|parked", None, 47.0, 40.0), ("6-24h|own|parked", None, 49.0, 40.0)], actual=50.0, at=at
        )

    scores = {(s.kind, s.candidate): s for s in PredictorScore.objects.all()}
    pattern = scores[("*", "pattern")]
    assert (pattern.weight, pattern.bookings, pattern.updated_at) == (pytest.approx(10 * DECAY + 1), 13, at)
    assert pattern.sum_abs_error == pytest.approx(50 * DECAY + 2.0)  # the booking's two errors averaged
    assert scores[("*", "model")].sum_abs_error == 50.0 and scores[("*", "model")].updated_at is None
    fresh = scores[("6-24h|own|parked", "persistence")]
    assert (fresh.weight, fresh.sum_abs_error, fresh.bookings) == (pytest.approx(1.0), pytest.approx(10.0), 1)
    assert {k for k, c in scores if c == "persistence"} == {"6-24h|own|parked", "6-24h", "*"}
    median = scores[("6-24h|own|parked", "median")]  # the mean of two: 43.5 and 44.5, 6.5 and 5.5 off
    assert (median.sum_abs_error, median.bookings) == (pytest.approx(6.0), 1)


@pytest.mark.django_db
def test_a_pick_up_whose_score_rows_exist_moves_them_without_inserting(django_capture_on_commit_callbacks):
    at = datetime(2026, 1, 5, tzinfo=UTC)
    scored = [("6-24h|own|parked", None, 47.0, 40.0)]
    with django_capture_on_commit_callbacks(execute=True):
        shadow_learn(scored=scored, actual=50.0, at=at)  # creates the rows

    with CaptureQueriesContext(connection) as second, django_capture_on_commit_callbacks(execute=True):
        shadow_learn(scored=scored, actual=44.0, at=at)

    assert not [q for q in second.captured_queries if q["sql"].lstrip().upper().startswith("INSERT")]
    scores = {(s.kind, s.candidate): s for s in PredictorScore.objects.all()}
    assert len(scores) == 3 * 3  # three levels of the kind, pattern / persistence / median
    pattern = scores[("6-24h", "pattern")]
    assert (pattern.weight, pattern.bookings) == (pytest.approx(DECAY + 1), 2)
    assert pattern.sum_abs_error == pytest.approx(3.0 * DECAY + 3.0)  # |50 - 47|, then |44 - 47|


@pytest.mark.parametrize(
    ("levels_", "median"),
    [((30.0, 70.0, 40.0), 40.0), ((None, 70.0, 40.0), 55.0), ((80.0, None, None), 80.0), ((None, None, None), None)],
)
def test_the_median_candidate_is_the_middle_of_those_that_ran(levels_, median):
    assert candidate_levels(*levels_).get("median") == median


def test_a_median_that_serves_answers_the_middle_with_an_interval_that_holds_the_defaults(post, settings):
    settings.CALIBRATION_CACHE_SECONDS = 0
    far = {**PREDICT, "booking_id": "BK1", "booking_start_time": "2025-11-05T05:00:00Z"}  # 36 h parked
    pattern = post(URL["predict"], far).json()
    for candidate, mae in (("pattern", 10.0), ("persistence", 10.0), ("median", 3.0)):
        PredictorScore.objects.create(kind="*", candidate=candidate, weight=30, sum_abs_error=30 * mae, bookings=30)

    served = post(URL["predict"], {**far, "booking_id": "BK2"}).json()

    stored = Prediction.objects.get(prediction_id=served["prediction_id"])
    assert (served["served_by"], stored.model_version) == ("median", "median-of-candidates-1.0")
    assert stored.calibration_key.startswith("median|predict|")
    middle = (stored.pattern_level + stored.persistence_level) / 2  # of two (no champion), their mean
    assert stored.persistence_level == 50.0 and abs(stored.pattern_level - 50.0) > 1
    assert served["predicted_battery_percentage"] == pytest.approx(middle, abs=0.006)
    expected, held = pattern["confidence_interval"], served["confidence_interval"]
    assert held["lower"] <= expected["lower"] and held["upper"] >= expected["upper"]


def test_a_level_without_a_number_adds_no_error_and_the_others_still_count():
    errors = booking_errors([("6-24h|own|parked", None, float("nan"), 40.0)], 50.0)

    assert {candidate for _, candidate in errors} <= {"persistence", "median"}
    assert errors[("6-24h", "persistence")] == 10.0
    assert all(value == value for value in errors.values())  # no NaN stored
