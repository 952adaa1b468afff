"""The weekly drift check: PSI of the champion's inputs over the last week against its training window.

The checks run on a fleet simulated in summer (no seasonal change of the physics from week to week) with
few renters per car, so the learned figures have settled by the training window's last weeks. The
champion learns from its first 53 days; the check looks at days 53 to 60, either as simulated (ok) or
with the returns moved (drift). Models are trained with a handful of rounds: only their reference matters.
"""

from __future__ import annotations

import dataclasses
import logging
from datetime import UTC, datetime, timedelta
from io import StringIO
from pathlib import Path

import numpy as np
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone
from django_q.models import Schedule

from common.schedules import schedules_declare
from core.features import GAP_FEATURES, TRIP_FEATURES, Outcome
from core.simulation.fleet import FleetConfig
from learning.drift import (
    UNSCORED,
    bin_edges,
    bin_shares,
    feature_reference,
    model_drift_check,
    psi,
    psi_status,
)
from learning.models import DriftCheck, DriftStatus, ModelVersion
from learning.selectors import drift_latest_by_version
from learning.tasks import model_drift_weekly
from learning.training import model_promote, model_retrain, model_train, segment_frames
from tests.modelling import champion_serve, fleet_outcomes, outcomes_store

pytestmark = pytest.mark.django_db

SUMMER = FleetConfig(cars=100, renters=50, days=50, seed=5, epoch=datetime(2025, 6, 1, tzinfo=UTC))
NOW = SUMMER.epoch + timedelta(days=SUMMER.days)
CUT = NOW - timedelta(days=7)  # the champion trains on the outcomes known by then; the check looks after it


@pytest.fixture
def model_dir(settings, tmp_path) -> Path:
    settings.MODEL_DIR = tmp_path / "models"
    return settings.MODEL_DIR


def summer_champion(*, recent=lambda o: o) -> ModelVersion:
    """A champion trained on the summer fleet before `CUT`; the database holds its whole history, the
    outcomes after the cut passed through `recent` (what changed in the week checked)."""
    history = fleet_outcomes(SUMMER)
    outcomes_store(o if o.end <= CUT else recent(o) for o in history)
    row = model_train(outcomes=[o for o in history if o.end <= CUT], source="synthetic:summer", rounds=5)
    return model_promote(version=row.version)


def emptier(o: Outcome) -> Outcome:
    """The car comes back 30 points emptier (and is picked up so too): renters drive it further."""
    return dataclasses.replace(
        o, battery_at_start=max(o.battery_at_start - 30, 0.0), battery_at_end=max(o.battery_at_end - 30, 0.0)
    )


def unplugged(o: Outcome) -> Outcome:
    """Nobody leaves the car plugged in any more (a broken charger network, a new renter app)."""
    return dataclasses.replace(o, charging_at_end=False)


# --- the numbers ---------------------------------------------------------------------------------------------


def test_psi_is_about_zero_for_the_same_distribution_and_large_for_a_shifted_one():
    rng = np.random.default_rng(1)
    training = rng.normal(50, 10, 20_000)
    edges = bin_edges(training)
    reference, missing = bin_shares(training, edges)
    assert len(edges) == 9 and missing == 0.0
    assert reference == pytest.approx([0.1] * 10, abs=0.002)

    def against(values) -> float:
        shares, missing = bin_shares(values, edges)
        return psi([*reference, 0.0], [*shares, missing])

    assert against(training) == pytest.approx(0.0, abs=1e-9)
    assert against(rng.normal(50, 10, 2_000)) < 0.02
    assert 0.1 < against(rng.normal(54, 10, 2_000)) < 0.25  # four tenths of a standard deviation: moved
    assert against(rng.normal(60, 10, 2_000)) > 0.25  # one standard deviation: drifted
    assert against(np.full(500, np.nan)) > 5  # all missing where none was: an empty bin counts as 1e-4
    assert [psi_status(v, warn=0.1, drift=0.25) for v in (0.0, 0.0999, 0.1, 0.2499, 0.25, 3.0)] == [
        "ok",
        "ok",
        "warn",
        "warn",
        "drift",
        "drift",
    ]


def test_bins_give_a_shared_value_its_own_bin_count_missing_values_and_ignore_noise_below_a_hundredth():
    values = [0.0] * 70 + [1.0] * 30 + [np.nan] * 20  # "left charging" as the gap model sees it, some unknown

    edges = bin_edges(values)
    shares, missing = bin_shares(values, edges)

    assert edges == [0.0, 1.0]
    assert shares == pytest.approx([70 / 120, 30 / 120, 0.0], abs=1e-6)
    assert missing == pytest.approx(20 / 120, abs=1e-6)
    assert bin_edges([0.0, 3e-5, 4e-4, 0.004]) == [0.0]  # a share decaying towards 0 is still 0 at 0.01
    assert bin_edges([np.nan, np.nan]) == [] and bin_shares([np.nan, 1.0], []) == ([0.5], 0.5)
    assert bin_shares([], [0.0, 1.0]) == ([0.0, 0.0, 0.0], 0.0)


def test_the_reference_is_the_newest_weeks_of_the_training_window():
    gaps, trips = segment_frames([o for o in fleet_outcomes(SUMMER) if o.end <= CUT])

    reference = feature_reference(gaps, trips, days=28)

    assert reference["window_end"] == trips["end"].max().isoformat()
    assert reference["window_start"] == (trips["end"].max() - timedelta(days=28)).isoformat()
    newest = trips[trips["end"] >= trips["end"].max() - timedelta(days=28)]
    assert reference["trip"]["rows"] == len(newest) < len(trips)
    start_level = reference["trip"]["features"]["start_level"]
    assert start_level["edges"] == bin_edges(newest["start_level"])
    assert sum(start_level["shares"]) + start_level["missing"] == pytest.approx(1.0)
    assert feature_reference(gaps, trips, days=1000)["trip"]["rows"] == len(trips)


# --- the reference stored at training --------------------------------------------------------------------------


def test_training_stores_a_reference_of_every_input_and_so_does_retraining(model_dir):
    champion = champion_serve()

    reference = champion.feature_reference
    assert set(reference["gap"]["features"]) == set(GAP_FEATURES)
    assert set(reference["trip"]["features"]) == set(TRIP_FEATURES)
    # The small fleet's 20 days are shorter than the reference window: every training row is in it.
    assert {kind: reference[kind]["rows"] for kind in ("gap", "trip")} == champion.training_rows
    assert reference["window_end"] <= champion.window_end.isoformat()
    for kind in ("gap", "trip"):
        for name, figures in reference[kind]["features"].items():
            assert figures["edges"] == sorted(figures["edges"]), name
            assert len(figures["shares"]) == len(figures["edges"]) + 1, name
            assert sum(figures["shares"]) + figures["missing"] == pytest.approx(1.0, abs=1e-5), name

    report = model_retrain(outcomes=list(fleet_outcomes()), rounds=5)

    challenger = report.challenger.feature_reference
    assert set(challenger["trip"]["features"]) == set(TRIP_FEATURES)
    # Fitted only on the outcomes before the holdout's cut: fewer rows than the whole history.
    assert 0 < challenger["trip"]["rows"] < reference["trip"]["rows"]


# --- the check -------------------------------------------------------------------------------------------------


def test_a_week_like_the_training_window_is_ok(model_dir):
    champion = summer_champion()

    check = model_drift_check(now=NOW)

    assert check == DriftCheck.objects.get()
    assert (check.model_version, check.window_start, check.window_end) == (champion, CUT, NOW)
    assert check.status == DriftStatus.OK, check.features
    assert check.rows["gap"] >= 200 and check.rows["trip"] >= 200
    assert check.outcomes == sum(1 for o in fleet_outcomes(SUMMER) if CUT < o.end <= NOW)
    assert set(check.features["gap"]) == set(GAP_FEATURES) and set(check.features["trip"]) == set(TRIP_FEATURES)
    scored = [f["psi"] for kind in check.features.values() for name, f in kind.items() if name not in UNSCORED]
    assert check.max_psi == max(scored) < 0.1
    assert check.thresholds == {"psi_warn": 0.1, "psi_drift": 0.25, "min_rows": 200, "unscored": sorted(UNSCORED)}
    hours = check.features["gap"]["hours"]
    assert len(hours["shares"]) == len(champion.feature_reference["gap"]["features"]["hours"]["edges"]) + 1
    assert {"psi", "status", "scored", "shares", "missing"} == set(hours)


@pytest.mark.parametrize(
    ("change", "drifted"),
    [
        (emptier, {"trip.start_level", "gap.start_level"}),
        (unplugged, {"gap.charging", "gap.car_plug"}),  # left charging, and each car's learned plug-in share
    ],
    ids=["returned-emptier", "never-plugged-in"],
)
def test_a_week_unlike_the_training_window_is_drift(model_dir, change, drifted):
    summer_champion(recent=change)

    check = model_drift_check(now=NOW)

    assert check.status == DriftStatus.DRIFT
    for feature in drifted:
        kind, name = feature.split(".")
        assert check.features[kind][name]["psi"] > 0.25 and check.features[kind][name]["status"] == "drift"
    assert check.worst_feature in drifted
    kind, name = check.worst_feature.split(".")
    assert check.max_psi == check.features[kind][name]["psi"]


def test_the_calendar_and_the_history_counts_are_shown_but_do_not_set_the_status(model_dir, settings):
    summer_champion()

    check = model_drift_check(now=NOW)

    # The week checked is in another month than part of the reference: drift by the calendar alone.
    month = check.features["trip"]["month"]
    assert (month["status"], month["scored"]) == ("drift", False) and month["psi"] > 0.25
    assert {n for kind in check.features.values() for n, f in kind.items() if not f["scored"]} == UNSCORED
    assert check.status == DriftStatus.OK and check.worst_feature.split(".")[1] not in UNSCORED

    settings.DRIFT_PSI_WARN, settings.DRIFT_PSI_DRIFT = check.max_psi / 2, 10.0
    stricter = model_drift_check(now=NOW)

    assert (stricter.status, stricter.max_psi) == (DriftStatus.WARN, check.max_psi)
    assert (stricter.thresholds["psi_warn"], stricter.thresholds["psi_drift"]) == (check.max_psi / 2, 10.0)
    settings.DRIFT_MIN_ROWS = check.rows["trip"] + 1
    assert model_drift_check(now=NOW).status == DriftStatus.INSUFFICIENT_DATA


def test_too_few_recent_segments_are_insufficient_data_and_not_scored(model_dir):
    champion_serve()  # nothing recorded since

    check = model_drift_check()

    assert (check.status, check.rows, check.outcomes) == (DriftStatus.INSUFFICIENT_DATA, {"gap": 0, "trip": 0}, 0)
    assert (check.features, check.max_psi, check.worst_feature) == ({}, None, "")
    assert check.window_end - check.window_start == timedelta(days=7)
    assert model_drift_weekly() == "insufficient_data: 0 gaps, 0 trips"
    out = StringIO()
    call_command("drift_check", stdout=out)
    assert out.getvalue().splitlines()[-1] == "insufficient data: fewer than 200 gaps or trips to judge"


def test_without_a_champion_or_its_reference_there_is_no_check(model_dir, caplog):
    caplog.set_level(logging.INFO, logger="learning.drift")

    assert model_drift_check() is None
    assert "no champion model is registered" in caplog.text
    assert model_drift_weekly() == "skipped: no champion model is registered"

    champion = champion_serve()
    ModelVersion.objects.filter(pk=champion.pk).update(feature_reference={})  # trained before drift checks

    assert model_drift_check() is None
    assert f"the champion {champion.version} has no feature reference" in caplog.text
    assert not DriftCheck.objects.exists()


# --- the schedule, the command, the selector, the admin ---------------------------------------------------------


def test_the_weekly_drift_check_is_scheduled_on_the_training_cluster_after_migrate():
    schedule = Schedule.objects.get(name="model_drift_weekly")

    assert (schedule.func, schedule.schedule_type, schedule.repeats, schedule.cluster) == (
        "learning.tasks.model_drift_weekly",
        Schedule.WEEKLY,
        -1,
        "training",
    )
    first = schedule.next_run
    schedules_declare()
    assert Schedule.objects.get(name="model_drift_weekly").next_run == first


def test_the_command_prints_every_feature_by_psi_largest_first_the_unscored_last(model_dir):
    champion = summer_champion(recent=emptier)
    out = StringIO()

    call_command("drift_check", "--at", NOW.isoformat(), stdout=out)

    check = DriftCheck.objects.get()
    lines = out.getvalue().splitlines()
    assert lines[0].startswith(f"Drift of {champion.version}'s inputs from {CUT:%Y-%m-%d %H:%M}")
    assert f"{check.rows['gap']} gaps, {check.rows['trip']} trips" in lines[0]
    assert lines[1].split() == ["kind", "feature", "PSI", "status"]
    table = [line.split() for line in lines[2:-1]]
    assert len(table) == len(GAP_FEATURES) + len(TRIP_FEATURES)
    unscored_rows = sum(name in UNSCORED for name in [*GAP_FEATURES, *TRIP_FEATURES])  # month is in both kinds
    scored, unscored = table[:-unscored_rows], table[-unscored_rows:]  # the calendar and the counts last
    assert {row[1] for row in unscored} == UNSCORED and all(row[-2:] == ["(not", "scored)"] for row in unscored)
    for group in (scored, unscored):
        assert [float(row[2]) for row in group] == sorted((float(row[2]) for row in group), reverse=True)
    assert scored[0][:2] == ["trip", "start_level"] and scored[0][3] == "drift"
    assert lines[-1] == f"drift: worst trip.start_level PSI {check.max_psi:.4f}"


def test_the_command_says_why_it_cannot_check_and_refuses_a_naive_time(model_dir):
    with pytest.raises(CommandError, match="No drift check: no champion model is registered"):
        call_command("drift_check", stdout=StringIO())
    with pytest.raises(CommandError, match="with its offset"):
        call_command("drift_check", "--at", "2026-03-01T00:00:00", stdout=StringIO())


def _version(name: str) -> ModelVersion:
    return ModelVersion.objects.create(version=name, source="test", artifact_path=f"{name}.json", artifact_sha256="0")


def _check(model: ModelVersion, *, at: datetime, status: str) -> DriftCheck:
    return DriftCheck.objects.create(
        model_version=model, checked_at=at, window_start=at - timedelta(days=7), window_end=at, status=status
    )


def test_the_latest_check_of_every_model_version_in_one_query(django_assert_num_queries):
    old, new, unchecked = _version("old"), _version("new"), _version("unchecked")
    t = timezone.now()
    _check(old, at=t - timedelta(days=14), status="ok")
    latest_old = _check(old, at=t - timedelta(days=7), status="warn")
    _check(new, at=t, status="ok")
    latest_new = _check(new, at=t, status="drift")  # the same time: the later row wins

    with django_assert_num_queries(1):
        latest = drift_latest_by_version()
        versions = {version: check.model_version.version for version, check in latest.items()}

    assert latest == {"old": latest_old, "new": latest_new}
    assert versions == {"old": "old", "new": "new"} and unchecked.version not in latest
    assert drift_latest_by_version.__module__ == "learning.selectors"


def test_the_admin_lists_drift_checks_read_only(admin_client):
    check = _check(_version("v1"), at=timezone.now(), status="warn")

    assert admin_client.get("/admin/learning/driftcheck/").status_code == 200
    page = admin_client.get(f"/admin/learning/driftcheck/{check.pk}/change/")
    assert page.status_code == 200 and b'name="_save"' not in page.content
    assert admin_client.get("/admin/learning/driftcheck/add/").status_code == 403
