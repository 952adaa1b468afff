"""probability_ready is recalibrated by where this fleet's actual levels fell in their predicted distributions.

Car 78 reported 65.5 % on 2025-11-02 at 12:00 (the seed's booking-created); BK123456 starts 31 hours later, in
the 24-72 h lead time, and is picked up at 60.5 % (the seed's booking-started).
"""

from datetime import UTC, datetime

import pytest

from core.readiness import PIT_BINS, LevelDistribution, PitCalibration, Requirement, probability_ready
from predictions.calibration import PIT_DECAY, PIT_PRIOR, readiness_calibration_learn
from predictions.models import Prediction, PredictorScore, ReadinessCalibration
from tests.seed_examples import CREATED, STARTED, URL

pytestmark = pytest.mark.django_db


def test_a_pick_up_teaches_the_recalibration_of_its_predictions_lead_time_and_nothing_before(post):
    post(URL["created"], CREATED)
    assert not ReadinessCalibration.objects.exists()  # no outcome is known yet

    assert post(URL["started"], STARTED).status_code == 200

    row = ReadinessCalibration.objects.get(key="24-72h")
    assert row.bookings == pytest.approx(1.0)
    assert sum(row.counts) == pytest.approx(1.0)
    created = Prediction.objects.filter(booking_external_id="BK123456", trigger="booking.created").get()
    u = LevelDistribution.from_interval(
        created.predicted_battery, created.confidence_lower, created.confidence_upper
    ).cdf(60.5)
    assert row.counts[min(int(u * PIT_BINS), PIT_BINS - 1)] == pytest.approx(1.0)


def test_a_prediction_states_the_recalibrated_probability_and_aims_its_charge_at_it(post, settings):
    settings.CALIBRATION_CACHE_SECONDS = 0
    # This fleet's actual levels landed at the predicted level far more often than the intervals said.
    counts = [0.0] * PIT_BINS
    counts[PIT_BINS // 2 - 1] = counts[PIT_BINS // 2] = 150.0
    ReadinessCalibration.objects.create(key="24-72h", counts=counts, bookings=300.0)

    body = post(URL["created"], {**CREATED, "required_battery": 55}).json()

    ci = body["confidence_interval"]
    raw = probability_ready(
        LevelDistribution.from_interval(body["predicted_battery"], ci["lower"], ci["upper"]), Requirement(55.0)
    )
    calibration = PitCalibration.from_counts(counts, PIT_PRIOR)
    stated = body["readiness"]["probability_ready"]
    assert stated == pytest.approx(calibration.probability(raw), abs=1e-4)
    assert stated > raw  # tighter than the interval says: a requirement under the level is likelier met
    assert Prediction.objects.get(booking_external_id="BK123456").probability_ready == stated


def test_a_pick_up_also_teaches_its_lead_time_and_the_cars_last_known_state(post):
    post(URL["created"], CREATED)
    post(URL["started"], STARTED)

    created = Prediction.objects.get(booking_external_id="BK123456", trigger="booking.created")
    assert created.shadow_kind == "24-72h|own|unknown"  # the level came with the creation, the plug state did not
    rows = {row.key: row for row in ReadinessCalibration.objects.all()}
    assert set(rows) == {"24-72h", "24-72h|unknown"}
    assert rows["24-72h|unknown"].counts == rows["24-72h"].counts


def test_a_car_last_seen_low_is_a_shadow_kind_of_its_own_and_teaches_its_states_recalibration(
    post, django_capture_on_commit_callbacks
):
    """Below predictions.shadow.LOW_LEVEL the car's kind says so (staff may or may not recharge it), and its scores
    are its own; the readiness recalibration keeps one row per state, with or without the band."""
    post(URL["created"], {**CREATED, "current_battery_level": 18.0})
    with django_capture_on_commit_callbacks(execute=True):  # the shadow scores are written once the event commits
        post(URL["started"], {**STARTED, "actual_battery_at_start": 17.0})

    created = Prediction.objects.get(booking_external_id="BK123456", trigger="booking.created")
    assert created.shadow_kind == "24-72h|own|unknown-low"
    assert {row.key for row in ReadinessCalibration.objects.all()} == {"24-72h", "24-72h|unknown"}
    scored = {(s.kind, s.candidate) for s in PredictorScore.objects.all()}
    assert ("24-72h|own|unknown-low", "persistence") in scored
    assert not any(kind == "24-72h|own|unknown" for kind, _ in scored)


def test_a_state_with_outcomes_of_its_own_is_priced_with_them_over_its_lead_times(post, settings):
    settings.CALIBRATION_CACHE_SECONDS = 0
    lead = [10.0] * PIT_BINS  # the lead time as a whole: as the intervals said
    own = [0.0] * PIT_BINS
    own[PIT_BINS // 2 - 1] = own[PIT_BINS // 2] = 150.0  # this state: at the predicted level far more often
    ReadinessCalibration.objects.create(key="24-72h", counts=lead, bookings=200.0)
    ReadinessCalibration.objects.create(key="24-72h|unknown", counts=own, bookings=300.0)

    body = post(URL["created"], {**CREATED, "required_battery": 55}).json()

    ci = body["confidence_interval"]
    raw = probability_ready(
        LevelDistribution.from_interval(body["predicted_battery"], ci["lower"], ci["upper"]), Requirement(55.0)
    )
    expected = PitCalibration.from_counts(own, PIT_PRIOR, PitCalibration.from_counts(lead, PIT_PRIOR))
    assert body["readiness"]["probability_ready"] == pytest.approx(expected.probability(raw), abs=1e-4)
    assert body["readiness"]["probability_ready"] > raw + 0.01


def test_a_pick_up_decays_each_keys_counts_and_adds_its_share_to_the_bin_it_fell_in():
    at = datetime(2026, 1, 5, tzinfo=UTC)
    ReadinessCalibration.objects.create(key="6-24h", counts=[1.0] * PIT_BINS, bookings=4.0)
    ReadinessCalibration.objects.create(key="<6h", counts=[2.0] * PIT_BINS, bookings=2.0)  # not taught: stays
    median = (50.0, 40.0, 60.0)  # the actual 50 falls at the middle of its distribution

    readiness_calibration_learn(scored=[(("6-24h", "6-24h|parked"), *median)] * 2, actual=50.0, at=at)

    rows = {r.key: r for r in ReadinessCalibration.objects.all()}
    middle = PIT_BINS // 2
    decayed = rows["6-24h"]
    assert decayed.bookings == pytest.approx(4.0 * PIT_DECAY + 1.0) and decayed.updated_at == at
    assert decayed.counts[middle] == pytest.approx(PIT_DECAY + 1.0)  # two predictions, half a booking each
    assert decayed.counts[0] == pytest.approx(PIT_DECAY)
    fresh = rows["6-24h|parked"]
    assert (fresh.bookings, sum(fresh.counts), fresh.counts[middle]) == (pytest.approx(1.0), pytest.approx(1.0), 1.0)
    assert (rows["<6h"].counts, rows["<6h"].bookings, rows["<6h"].updated_at) == ([2.0] * PIT_BINS, 2.0, None)
