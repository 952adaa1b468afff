"""Training, the registry, promotion and serving: the trained model answers once it is the champion.

Models are trained small (see `tests.modelling`) into a temporary MODEL_DIR; every test trains
or registers its own, and the process cache of the champion is dropped around every test.
"""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta
from io import StringIO
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone
from django_q.models import OrmQ, Schedule

from bookings.models import ReadingSource, Vehicle
from callbacks.models import CallbackOutbox
from callbacks.repricing import predictions_reprice_all
from common.schedules import schedules_declare
from core import gbm
from core.simulation.fleet import FleetConfig
from learning.champion import artifact_path, champion_forget, champion_model
from learning.models import ModelStatus, ModelVersion
from learning.selectors import readings_mid_gap
from learning.tasks import model_retrain_weekly
from learning.training import COVERAGE_RANGE, MIN_OUTCOMES, _decide, model_promote, model_train, segment_frames
from predictions.models import Prediction
from predictions.services import MODEL_VERSION
from tests.factories import T0, BatteryReadingFactory
from tests.modelling import SMALL_FLEET, champion_serve, fleet_outcomes, outcomes_store
from tests.seed_examples import CREATED, ENDED, PREDICT_REAL_TIME, STARTED, URL

pytestmark = pytest.mark.django_db

# The retrain comparisons: the recorded history, a champion trained on a bigger fleet of the same simulator
# (it beats a challenger that sees only the history's first 80 %), and one trained on a small fleet (it does not).
HISTORY = FleetConfig(cars=25, renters=80, days=30, seed=8)
BIG_FLEET = FleetConfig(cars=40, renters=120, days=40, seed=9)
OTHER_SMALL_FLEET = FleetConfig(cars=15, renters=40, days=20, seed=21)


@pytest.fixture
def model_dir(settings, tmp_path) -> Path:
    settings.MODEL_DIR = tmp_path / "models"
    return settings.MODEL_DIR


@pytest.fixture
def champion(model_dir) -> ModelVersion:
    return champion_serve()


# --- train_model --synthetic ------------------------------------------------------------------


def test_train_model_synthetic_registers_the_first_model_as_champion_and_if_missing_then_does_nothing(model_dir):
    small = {"cars": SMALL_FLEET.cars, "renters": SMALL_FLEET.renters, "days": SMALL_FLEET.days, "seed": 3}
    out = StringIO()

    call_command("train_model", synthetic=True, stdout=out, stderr=StringIO(), **small)

    [row] = ModelVersion.objects.all()
    assert row.status == ModelStatus.CHAMPION and row.promoted_at is not None
    assert row.source == "synthetic:3"
    assert row.training_rows["gap"] > 0 and row.training_rows["trip"] > 0
    assert set(row.features) == {"gap", "trip", "quantiles"} and row.calibration.keys() == {"gap", "trip"}
    assert row.window_start < row.window_end
    assert artifact_path(row).parent == model_dir and artifact_path(row).is_file()
    assert gbm.GapTripModel.load(artifact_path(row), row.artifact_sha256).version == row.version
    assert f"{row.version} is now the champion" in out.getvalue()

    out = StringIO()
    call_command("train_model", synthetic=True, if_missing=True, stdout=out, **small)

    assert "already serves; nothing to do" in out.getvalue()
    assert ModelVersion.objects.count() == 1


def test_train_model_if_missing_replaces_a_champion_this_code_cannot_serve(champion):
    # A champion trained by an older release with other features: a valid artifact this code refuses.
    path = artifact_path(champion)
    artifact = json.loads(path.read_text())
    artifact["features"]["gap"] = artifact["features"]["gap"][:-1]
    path.write_text(json.dumps(artifact))
    ModelVersion.objects.filter(pk=champion.pk).update(artifact_sha256=hashlib.sha256(path.read_bytes()).hexdigest())
    small = {"cars": SMALL_FLEET.cars, "renters": SMALL_FLEET.renters, "days": SMALL_FLEET.days, "seed": 5}
    out = StringIO()

    call_command("train_model", synthetic=True, if_missing=True, stdout=out, stderr=StringIO(), **small)

    assert "was trained for other features" in out.getvalue()
    serving = ModelVersion.objects.get(status=ModelStatus.CHAMPION)
    assert serving != champion and serving.source == "synthetic:5"
    assert champion_model().version == serving.version


def test_train_model_if_missing_keeps_a_champion_whose_artifact_is_missing(champion):
    artifact_path(champion).unlink()  # e.g. a model directory not mounted yet: never a reason to replace it
    out, err = StringIO(), StringIO()

    call_command("train_model", synthetic=True, if_missing=True, stdout=out, stderr=err)

    assert "cannot be loaded" in err.getvalue() and "nothing to do" in out.getvalue()
    assert list(ModelVersion.objects.all()) == [champion]


def test_train_model_registers_a_challenger_when_a_champion_serves_and_needs_synthetic(champion):
    call_command("train_model", synthetic=True, cars=15, renters=40, days=20, seed=4, stdout=StringIO())

    challenger = ModelVersion.objects.exclude(pk=champion.pk).get()
    assert challenger.status == ModelStatus.CHALLENGER
    assert ModelVersion.objects.get(status=ModelStatus.CHAMPION) == champion
    with pytest.raises(CommandError, match="Only --synthetic"):
        call_command("train_model")


# --- artifacts ----------------------------------------------------------------------------------


def test_a_saved_artifact_loads_back_to_the_same_quantiles(tmp_path):
    gaps, trips = segment_frames(list(fleet_outcomes()))
    model = gbm.train("roundtrip", gaps, trips, rounds=30).model

    path, sha = model.save(tmp_path)
    loaded = gbm.GapTripModel.load(path, sha)

    assert (loaded.version, loaded.rounds, loaded.params) == (model.version, model.rounds, model.params)
    for kind, frame in (("gap", gaps), ("trip", trips)):
        rows = gbm.matrix(frame, kind)
        assert loaded.segment(kind).scale == model.segment(kind).scale
        np.testing.assert_array_equal(loaded.segment(kind).quantiles(rows), model.segment(kind).quantiles(rows))


def test_a_champion_whose_artifact_does_not_match_its_checksum_is_not_served(champion, post, api):
    assert post(URL["predict"], PREDICT_REAL_TIME).json()["prediction_method"] == "real_time_cascade"
    path = artifact_path(champion)
    path.write_text(path.read_text() + " ")  # still valid JSON: only the checksum can tell
    champion_forget()  # as a restarted process would

    body = post(URL["predict"], PREDICT_REAL_TIME).json()

    assert body["prediction_method"] == "pattern_real_time_cascade"
    assert body["model_version"] == MODEL_VERSION
    info = api.get("/api/v1/model/info").json()
    assert info["serving"] == "pattern_cascade" and info["model_version"] == MODEL_VERSION
    assert info["champion"]["version"] == champion.version  # registered, but not what answers


# --- the promotion rule -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("challenger", "champion", "promote", "why"),
    [
        ({"mae": 5.0, "coverage_95": 0.95}, None, True, "no champion"),
        ({"mae": 5.0, "coverage_95": 0.90}, None, False, "coverage"),
        ({"mae": 5.0, "coverage_95": COVERAGE_RANGE[0]}, {"mae": 6.0}, True, "below"),
        ({"mae": 5.0, "coverage_95": COVERAGE_RANGE[1]}, {"mae": 6.0}, True, "below"),
        ({"mae": 5.0, "coverage_95": 0.9199}, {"mae": 9.0}, False, "coverage"),
        ({"mae": 5.0, "coverage_95": 0.9801}, {"mae": 9.0}, False, "coverage"),
        ({"mae": 6.0, "coverage_95": 0.95}, {"mae": 6.0}, False, "not below"),
        ({"mae": 6.1, "coverage_95": 0.95}, {"mae": 6.0}, False, "not below"),
    ],
)
def test_a_challenger_is_promoted_only_with_a_lower_mae_and_honest_intervals(challenger, champion, promote, why):
    promoted, reason = _decide(challenger, champion)

    assert promoted is promote
    assert why in reason


# --- retrain ------------------------------------------------------------------------------------


def test_retrain_reads_the_levels_reported_between_bookings_as_extra_gap_rows(db):
    history = list(fleet_outcomes())[:60]
    outcomes_store(history)
    car = history[0].vehicle_id
    ordered = sorted((o for o in history if o.vehicle_id == car), key=lambda o: o.start)
    first, second = next((a, b) for a, b in pairwise(ordered) if b.start - a.end > timedelta(hours=4))
    vehicle = Vehicle.objects.get(external_id=car)
    early, late = first.end + timedelta(hours=1), second.start - timedelta(hours=1)
    for source, at in (
        (ReadingSource.BOOKING_CREATED, early),  # telematics on a booking's creation: inside the gap
        (ReadingSource.PREDICT_REQUEST, early + timedelta(minutes=1)),  # polled a minute later: a near-copy
        (ReadingSource.PREDICT_REQUEST, late),  # a real-time /predict: inside the gap
        (ReadingSource.BOOKING_ENDED, first.end),  # the gap's own start
        (ReadingSource.PREDICT_REQUEST, second.start + timedelta(days=400)),  # after `until`
    ):
        BatteryReadingFactory(vehicle=vehicle, level=50.0, recorded_at=at, source=source)

    readings = readings_mid_gap(until=second.start + timedelta(days=1))

    assert [(r.vehicle_id, r.at) for r in readings] == [(car, early), (car, early + timedelta(minutes=1)), (car, late)]
    plain, with_readings = segment_frames(history)[0], segment_frames(history, readings)[0]
    assert len(with_readings) == len(plain) + 2  # the near-copy is skipped
    hours = (late - first.end).total_seconds() / 3600
    assert sorted(with_readings["since_return"])[-2:] == pytest.approx([1.0, hours])


def test_retrain_refuses_with_too_few_outcomes(model_dir):
    outcomes_store(fleet_outcomes()[: MIN_OUTCOMES - 1])

    with pytest.raises(CommandError, match=f"{MIN_OUTCOMES - 1} outcomes recorded; retraining needs at least 200"):
        call_command("retrain", stdout=StringIO(), stderr=StringIO())

    assert not ModelVersion.objects.exists()
    assert model_retrain_weekly() == f"skipped: {MIN_OUTCOMES - 1} outcomes recorded, need {MIN_OUTCOMES}"


def figures(output: str, name: str) -> list[str]:
    [line] = [line for line in output.splitlines() if line.startswith(name)]
    return line.split()[1:]


def test_retrain_promotes_a_challenger_that_beats_a_weak_champion(model_dir, post):
    weak = champion_serve(config=OTHER_SMALL_FLEET)
    outcomes_store(fleet_outcomes(HISTORY))
    out = StringIO()

    call_command("retrain", stdout=out, stderr=StringIO())

    challenger = ModelVersion.objects.exclude(pk=weak.pk).get()
    weak.refresh_from_db()
    assert (challenger.status, weak.status) == (ModelStatus.CHAMPION, ModelStatus.RETIRED)
    assert challenger.source == "outcomes"
    mine, theirs = challenger.holdout_metrics, challenger.champion_metrics
    assert mine["mae"] < theirs["mae"]
    assert COVERAGE_RANGE[0] <= mine["coverage_95"] <= COVERAGE_RANGE[1]
    assert mine["rows"] == theirs["rows"] > 0  # both scored on the same held-out outcomes
    assert challenger.window_end < fleet_outcomes(HISTORY)[-1].end  # trained on the older outcomes only
    output = out.getvalue()
    assert figures(output, "challenger")[:2] == [str(mine["rows"]), str(mine["mae"])]
    assert figures(output, "champion")[:2] == [str(theirs["rows"]), str(theirs["mae"])]
    assert f"promoted {challenger.version}" in output and challenger.notes in output
    assert post(URL["predict"], PREDICT_REAL_TIME).json()["model_version"] == challenger.version


def test_retrain_keeps_a_champion_that_learned_from_more_data(model_dir):
    strong = champion_serve(config=BIG_FLEET, rounds=60)
    outcomes_store(fleet_outcomes(HISTORY))
    out = StringIO()

    # Without the prior: with it the challenger would learn the champion's own fleet as well as the history.
    call_command("retrain", no_prior=True, stdout=out, stderr=StringIO())

    challenger = ModelVersion.objects.exclude(pk=strong.pk).get()
    assert challenger.status == ModelStatus.CHALLENGER
    assert ModelVersion.objects.get(status=ModelStatus.CHAMPION) == strong
    mine, theirs = challenger.holdout_metrics, challenger.champion_metrics
    assert COVERAGE_RANGE[0] <= mine["coverage_95"] <= COVERAGE_RANGE[1]  # kept for its MAE, not its intervals
    assert mine["mae"] >= theirs["mae"]
    assert "not below champion's" in challenger.notes
    output = out.getvalue()
    assert figures(output, "champion")[:2] == [str(theirs["rows"]), str(theirs["mae"])]
    assert "kept the champion" in output


# --- serving ------------------------------------------------------------------------------------


def test_with_a_champion_predict_answers_with_the_seeds_method_and_the_champions_version(champion, post):
    response = post(URL["predict"], PREDICT_REAL_TIME)

    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["prediction_method"] == "real_time_cascade"
    assert body["model_version"] == champion.version
    ci = body["confidence_interval"]
    assert 0 <= ci["lower"] <= body["predicted_battery_percentage"] <= ci["upper"] <= 100
    assert Prediction.objects.get(prediction_id=body["prediction_id"]).model_version == champion.version


def test_with_a_champion_the_webhooks_answer_with_the_seeds_methods(champion, post):
    created = post(URL["created"], CREATED).json()
    started = post(URL["started"], STARTED).json()

    assert created["prediction_method"] == "real_time"
    assert [(a["booking_id"], a["prediction_method"]) for a in started["affected_bookings"]] == [
        ("BK789", "real_time_cascade")
    ]
    assert set(Prediction.objects.values_list("model_version", flat=True)) == {champion.version}


def test_with_a_champion_an_event_cascades_through_fifty_bookings(champion, post):
    post(URL["created"], CREATED)
    post(URL["started"], {**STARTED, "future_bookings": []})
    start = T0 + timedelta(days=2)
    future = [
        {
            "booking_id": f"F{i}",
            "user_id": str(7000 + i % 7),
            "starts_at": (start + timedelta(hours=5 * i)).isoformat(),
            "ends_at": (start + timedelta(hours=5 * i + 2)).isoformat(),
        }
        for i in range(50)
    ]

    response = post(URL["ended"], {**ENDED, "future_bookings": future})

    assert response.status_code == 200, response.json()
    affected = response.json()["affected_bookings"]
    assert [a["booking_id"] for a in affected] == [f"F{i}" for i in range(50)]
    assert [a["prediction_method"] for a in affected] == ["real_time"] + ["real_time_cascade"] * 49
    for a in affected:
        ci = a["confidence_interval"]
        assert 0 <= ci["lower"] <= a["predicted_battery"] <= ci["upper"] <= 100, a
    current = Prediction.objects.filter(booking_external_id__startswith="F", is_current=True)
    assert current.count() == 50
    for p in current:  # each booking's steps (since the previous one) end at its predicted level
        assert p.cascade_steps and abs(p.cascade_steps[-1]["battery_after"] - p.predicted_battery) < 0.05, p
    assert set(current.values_list("model_version", flat=True)) == {champion.version}


# --- registry endpoints and the schedule ----------------------------------------------------------


def test_without_a_model_the_registry_is_empty_and_the_pattern_cascade_serves(api):
    assert api.get("/api/v1/models").json() == {"models": [], "total": 0, "count": 0}
    info = api.get("/api/v1/model/info").json()
    assert (info["serving"], info["champion"], info["model_version"]) == ("pattern_cascade", None, MODEL_VERSION)


def test_models_lists_every_registered_model_newest_first(champion, api):
    challenger = model_train(outcomes=list(fleet_outcomes()), source="outcomes", rounds=5)

    body = api.get("/api/v1/models").json()

    assert (body["total"], body["count"]) == (2, 2)
    assert [(m["version"], m["status"]) for m in body["models"]] == [
        (challenger.version, "challenger"),
        (champion.version, "champion"),
    ]
    listed = body["models"][1]
    assert listed["source"] == "synthetic:3" and listed["kind"] == "gap-trip-lgbm"
    assert listed["promoted_at"] and listed["trained_at"] and listed["window_start"] < listed["window_end"]
    assert listed["holdout_metrics"] == champion.holdout_metrics
    assert listed["hyperparameters"]["rounds"] == 30
    assert listed["training_rows"] == champion.training_rows
    assert listed["calibration"] == champion.calibration and listed["features"] == champion.features
    assert {"champion_metrics", "training_seconds", "notes", "window_end"} <= set(listed)
    limited = api.get("/api/v1/models?limit=1").json()
    assert (limited["total"], limited["count"], limited["models"][0]["version"]) == (2, 1, challenger.version)
    for bad in ("0", "501", "x"):
        response = api.get(f"/api/v1/models?limit={bad}")
        assert response.status_code == 400 and "limit" in response.json()["fields"]


def test_model_info_shows_the_serving_champion_and_its_accuracy(champion, api, post):
    post(URL["created"], CREATED)
    post(URL["started"], STARTED)  # scores the champion's prediction of BK123456

    info = api.get("/api/v1/model/info").json()

    assert info["serving"] == "model"
    assert info["model_version"] == champion.version and info["status"] == "LOADED"
    assert info["champion"]["version"] == champion.version and info["champion"]["status"] == "champion"
    assert info["accuracy"]["scored_predictions"] == 1
    assert {"model_name", "model_type", "description", "confidence_level", "fleet_prior", "statistics"} <= set(info)


def test_the_weekly_retrain_is_scheduled_on_the_training_cluster_after_migrate():
    schedule = Schedule.objects.get(name="model_retrain_weekly")

    assert (schedule.func, schedule.schedule_type, schedule.repeats, schedule.cluster) == (
        "learning.tasks.model_retrain_weekly",
        Schedule.WEEKLY,
        -1,
        "training",
    )
    # First due a week after the install (nothing to retrain on yet), not at once; redeclaring keeps it.
    assert schedule.next_run > timezone.now() + timedelta(days=6)
    first = schedule.next_run
    schedules_declare()
    assert Schedule.objects.get(name="model_retrain_weekly").next_run == first


# --- a new champion's numbers reach Laravel ------------------------------------------------------


def test_promotion_queues_the_repricing_and_repricing_sends_the_new_numbers(
    model_dir, post, settings, django_capture_on_commit_callbacks
):
    settings.ML_CALLBACK_URL = "http://127.0.0.1:9/ml/predictions-updated"
    post(URL["created"], CREATED)
    post(URL["started"], STARTED)  # BK789 is scheduled after it, priced by the pattern cascade
    before = Prediction.objects.get(booking_external_id="BK789", is_current=True)
    assert before.model_version == MODEL_VERSION
    row = model_train(outcomes=list(fleet_outcomes()), source="test", rounds=20)

    with django_capture_on_commit_callbacks(execute=True):
        model_promote(version=row.version)

    queued = [(q.task["func"], tuple(q.task["args"])) for q in OrmQ.objects.all()]
    assert ("callbacks.tasks.predictions_reprice_all", ("model_promoted",)) in queued

    assert predictions_reprice_all(triggered_by="model_promoted") == 1

    after = Prediction.objects.get(booking_external_id="BK789", is_current=True)
    assert after.model_version == row.version and after.trigger == "model_promoted"
    callback = CallbackOutbox.objects.get(triggered_by="model_promoted")
    body = json.loads(callback.body)
    assert body["event"] == "predictions.updated"
    assert [(a["booking_id"], a["predicted_battery"]) for a in body["affected_bookings"]] == [
        ("BK789", after.predicted_battery)
    ]


@pytest.mark.parametrize(
    ("coverage", "bookings", "promote"),
    [
        (0.985, 150, True),  # 0.5 point above the range: well inside the noise of 150 bookings (2 SE = 3.6 points)
        (0.915, 150, True),
        (0.999, 2000, False),  # on 2,000 bookings the noise is 1 point: 0.999 is clearly too wide
        (0.905, 2000, False),
        (0.985, None, False),  # no count: the range as it stands
    ],
)
def test_a_coverage_outside_the_range_by_less_than_its_noise_does_not_refuse_a_challenger(coverage, bookings, promote):
    promoted, reason = _decide(
        {"mae": 5.0, "coverage_95": coverage}, {"mae": 9.0, "coverage_95": 0.95}, bookings=bookings
    )

    assert promoted is promote, reason
    assert ("below champion's" if promote else "coverage") in reason
