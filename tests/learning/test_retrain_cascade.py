"""The retrain against the fleet it serves: a shrinking simulated prior, and models compared as served.

The champion and the challenger are priced on the held-out bookings through `core.ml_cascade`
from each car's previous returns (`learning.cascade_eval`), on the database the service records
outcomes in. Models are trained small (`tests.modelling`).
"""

from __future__ import annotations

from datetime import datetime
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command

from bookings.models import Vehicle
from core import gbm, ml_cascade
from core.simulation.fleet import FleetConfig
from core.simulation.world import SHIFTS
from learning.cascade_eval import cascade_metrics, cascade_price, holdout_cascades
from learning.champion import artifact_path
from learning.feature_cache import feature_states_forget
from learning.models import BookingOutcome, ModelStatus, ModelVersion
from learning.prior import fleet_from_json, prior_rows, prior_weight
from learning.selectors import feature_book_for, outcomes_all
from learning.training import FROM_CHAMPION, MIN_HOLDOUT_BOOKINGS, model_promote, model_retrain, segment_frames
from tests.modelling import SMALL_FLEET, champion_serve, fleet_outcomes, outcomes_store
from tests.seed_examples import PREDICT_REAL_TIME, URL

pytestmark = pytest.mark.django_db

# The fleet served: the simulator's cars, renters and schedules, but every home charger a quarter as powerful.
SLOW_FLEET = FleetConfig(cars=25, renters=80, days=30, seed=5, world=SHIFTS["slow_chargers"])
# The same simulator as the champion's prior, a different draw: what a model of the bootstrap's world knows.
SAME_WORLD = FleetConfig(cars=25, renters=80, days=30, seed=5)
BIG_FLEET = FleetConfig(cars=40, renters=120, days=40, seed=9)


@pytest.fixture
def model_dir(settings, tmp_path) -> Path:
    settings.MODEL_DIR = tmp_path / "models"
    return settings.MODEL_DIR


def _model(row: ModelVersion) -> gbm.GapTripModel:
    return gbm.GapTripModel.load(artifact_path(row), row.artifact_sha256)


def _cut(outcomes, holdout: float = 0.2):
    return segment_frames(outcomes)[1]["at"].quantile(1 - holdout)


def test_a_synthetic_champion_on_a_fleet_with_slower_chargers_is_replaced_by_a_challenger_with_the_prior(
    model_dir, post
):
    synthetic = champion_serve(config=SMALL_FLEET)  # its window's dates overlap the fleet's: no protection
    outcomes_store(fleet_outcomes(SLOW_FLEET))
    out = StringIO()

    call_command("retrain", stdout=out, stderr=StringIO())

    challenger = ModelVersion.objects.exclude(pk=synthetic.pk).get()
    synthetic.refresh_from_db()
    assert (challenger.status, synthetic.status) == (ModelStatus.CHAMPION, ModelStatus.RETIRED)
    assert synthetic.window_start < challenger.window_end and challenger.window_start < synthetic.window_end
    mine, theirs = challenger.holdout_metrics, challenger.champion_metrics
    assert mine["mae"] < theirs["mae"] and theirs["version"] == synthetic.version
    # The prior is the champion's own simulated fleet, weighed by how many outcomes the fleet has.
    prior = challenger.hyperparameters["prior"]
    assert fleet_from_json(prior["fleet"]) == SMALL_FLEET
    outcomes = outcomes_all()
    cut = _cut(outcomes)
    known = sum(1 for o in outcomes if o.end < cut)
    rows = prior_rows(SMALL_FLEET)
    assert {k: v for k, v in prior.items() if k != "fleet"} == prior_weight(
        fleet_outcomes=known, prior_outcomes=rows.outcomes
    )
    assert 0 < prior["share"] < 1

    # The figures are the two models' cascades over the held-out bookings, replayed here through ml_cascade.
    cascades = holdout_cascades(outcomes, cut)
    for row, figures in ((challenger, mine), (synthetic, theirs)):
        replayed = cascade_metrics(cascade_price(_model(row), cascades))
        assert {k: figures[k] for k in replayed} == replayed
    bookings = {(o.vehicle_id, o.start) for o in outcomes if o.start >= cut}
    assert MIN_HOLDOUT_BOOKINGS <= mine["bookings"] <= len(bookings)
    assert mine["bookings"] < mine["predictions"] == mine["rows"] <= 3 * mine["bookings"]  # at depths 1 to 3
    assert mine["mae"] != mine["segments"]["mae"]  # not the segment rows' figure
    notes = challenger.notes
    assert f"compared on {mine['bookings']} held-out bookings ({mine['predictions']} predictions" in notes
    assert "inside the holdout" not in notes and "champion's window" not in notes
    output = out.getvalue()
    assert f"promoted {challenger.version}" in output and notes in output
    [line] = [line for line in output.splitlines() if line.startswith("champion")]
    assert line.split()[1:3] == [str(theirs["rows"]), str(theirs["mae"])]
    assert post(URL["predict"], PREDICT_REAL_TIME).json()["model_version"] == challenger.version


def test_the_held_out_cascades_read_the_features_serving_reads_at_that_moment(model_dir):
    outcomes = list(fleet_outcomes(SLOW_FLEET))
    cut = _cut(outcomes)
    cascades = holdout_cascades(outcomes, cut)
    champion = _model(champion_serve(config=SMALL_FLEET))
    picked = [c for c in cascades if len(c.targets) == 3][::40][:4]
    assert len(picked) == 4
    for c in picked:
        # The database as it was at that return: the outcomes returned by then, and no features kept from the
        # previous cascade's (the bulk inserts move no pattern on).
        BookingOutcome.objects.all().delete()
        outcomes_store([o for o in outcomes if o.end <= c.made_at], prefix=f"C{c.made_at:%j%H%M}-")
        feature_states_forget()
        renters = [item[4].user_id for item in c.trace if item[0] == "trip"]
        served = feature_book_for(vehicle=Vehicle.objects.get(external_id=c.car_id), user_ids=renters)
        assert served.car(c.car_id) == c.book.car(c.car_id)
        for user in renters:
            assert served.renter(user) == c.book.renter(user)
        direct = ml_cascade.compose(
            champion, c.trace, car_id=c.car_id, book=served, fleet_plug=c.fleet_plug, start_std=0.0
        )
        priced = cascade_price(champion, [c])
        assert [p.level for p in priced] == [
            point.level for point, target in zip(direct, c.targets, strict=True) if target[3]
        ]
        assert [p.depth for p in priced] == [t[2] for t in c.targets if t[3]]


def test_a_worse_challenger_is_not_promoted(model_dir):
    # The champion learnt a big fleet of the fleet's own world; the challenger only the fleet's older 80 %.
    strong = champion_serve(config=BIG_FLEET, rounds=60)
    outcomes_store(fleet_outcomes(SAME_WORLD))

    report = model_retrain(outcomes=outcomes_all(), prior=None, rounds=60)

    assert not report.promoted
    assert ModelVersion.objects.get(status=ModelStatus.CHAMPION) == strong
    assert report.challenger_metrics["mae"] >= report.champion_metrics["mae"] * 0.99
    assert "not below champion's" in report.challenger.notes and "no prior" in report.challenger.notes
    assert report.challenger.hyperparameters["prior"] is None


def test_the_priors_weight_shrinks_as_the_fleet_records_more_outcomes(model_dir):
    assert [prior_weight(fleet_outcomes=n, prior_outcomes=1000, strength=300)["total_weight"] for n in (0, 300)] == [
        300.0,
        150.0,
    ]
    champion_serve(config=SMALL_FLEET)
    history = sorted(fleet_outcomes(SLOW_FLEET), key=lambda o: o.end)
    shares = []
    for n in (300, len(history)):
        report = model_retrain(outcomes=history[:n], rounds=20, prior=FROM_CHAMPION)
        prior = report.challenger.hyperparameters["prior"]
        shares.append((prior["fleet_outcomes"], prior["total_weight"], prior["share"], prior["row_weight"]))
    (n1, w1, s1, r1), (n2, w2, s2, r2) = shares
    assert n1 < n2 and w1 > w2 and s1 > s2 and r1 > r2
    assert f"weighing {w2:.0f} outcomes against the fleet's {n2}" in report.challenger.notes


def test_a_champion_trained_on_this_fleets_outcomes_is_judged_after_its_window(model_dir):
    champion_serve(config=SMALL_FLEET)
    outcomes_store(fleet_outcomes(SLOW_FLEET))
    first = model_retrain(outcomes=outcomes_all(), rounds=20)
    champion = model_promote(version=first.challenger.version)  # whatever the retrain decided
    assert champion.source == "outcomes"

    second = model_retrain(outcomes=outcomes_all(), holdout_share=0.4, rounds=20)

    window_end: datetime = champion.window_end
    cut = _cut(outcomes_all(), 0.4)
    assert cut < window_end  # it trained on outcomes inside this holdout
    after = [
        p for p in cascade_price(_model(champion), holdout_cascades(outcomes_all(), cut)) if p.made_at > window_end
    ]
    assert second.champion_metrics["predictions"] == len(after)
    assert second.champion_metrics["mae"] == cascade_metrics(after)["mae"]
    assert "the bookings priced after the champion's window" in second.challenger.notes


def test_the_command_can_train_without_the_prior(model_dir):
    champion_serve(config=SMALL_FLEET)
    outcomes_store(fleet_outcomes(SLOW_FLEET))
    out = StringIO()

    call_command("retrain", no_prior=True, stdout=out, stderr=StringIO())

    challenger = ModelVersion.objects.get(source="outcomes")
    assert challenger.hyperparameters["prior"] is None and "no prior" in out.getvalue()


def test_the_prior_rows_are_cached_and_match_a_fresh_simulation(tmp_path):
    first = prior_rows(SMALL_FLEET, cache_dir=tmp_path)
    [cached] = list((tmp_path / "priors").glob("*.pkl"))
    again = prior_rows(SMALL_FLEET, cache_dir=tmp_path)
    fresh = prior_rows(SMALL_FLEET)

    assert cached.is_file() and again.outcomes == first.outcomes == fresh.outcomes == len(fleet_outcomes())
    for a, b in ((again.gaps, fresh.gaps), (again.trips, fresh.trips)):
        assert a.equals(b)
