"""Online interval calibration: each kind of prediction's interval follows what its scored outcomes showed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from predictions.calibration import (
    MARGIN_LIMITS,
    STEP,
    TAIL,
    calibration_key,
    calibration_learn,
    interval_widened,
)
from predictions.models import IntervalCalibration, Prediction
from tests.factories import T0, BatteryReadingFactory, VehicleFactory
from tests.seed_examples import CREATED, PREDICT_HISTORICAL, STARTED, URL

CREATED_KEY = "pattern|booking.created|24-72h"  # CREATED's reading is 31 hours before its pick-up


@pytest.mark.parametrize(
    ("hours", "span"), [(-1.0, "<6h"), (5.99, "<6h"), (6.0, "6-24h"), (30.0, "24-72h"), (72.0, ">72h")]
)
def test_the_kind_of_a_prediction_names_its_method_trigger_booking_and_lead_time(hours, span):
    present = datetime(2026, 1, 5, 8, tzinfo=UTC)
    target = present + timedelta(hours=hours)

    assert calibration_key(model=True, trigger="booking.ended", own=True, present=present, target=target) == (
        f"model|booking.ended|{span}"
    )
    assert calibration_key(model=False, trigger="booking.created", own=False, present=present, target=target) == (
        f"pattern|booking.created (cascade)|{span}"
    )


def test_each_side_moves_out_by_its_own_margin_never_past_the_level_and_within_0_and_100():
    assert interval_widened(50.0, 40.0, 55.0, None) == (40.0, 55.0)
    assert interval_widened(50.0, 40.0, 55.0, (10.0, 2.5)) == (30.0, 57.5)
    assert interval_widened(90.0, 80.0, 96.0, (30.0, 30.0)) == (50.0, 100.0)
    assert interval_widened(10.0, 4.0, 20.0, (8.0, -3.0)) == (0.0, 17.0)
    assert interval_widened(50.0, 45.0, 52.0, (-8.0, -8.0)) == (50.0, 50.0)  # shrinking stops at the level


@pytest.mark.django_db
def test_a_kinds_margins_widen_the_next_prediction_of_that_kind(post):
    vehicle = VehicleFactory(external_id="78")
    BatteryReadingFactory(vehicle=vehicle, level=80.0, recorded_at=T0, charging=False)
    body = {**PREDICT_HISTORICAL, "booking_start_time": (T0 + timedelta(hours=30)).isoformat()}
    raw = post(URL["predict"], body).json()
    key = Prediction.objects.get(prediction_id=raw["prediction_id"]).calibration_key
    assert key == "pattern|predict|24-72h"
    IntervalCalibration.objects.create(key=key, margin_lower=6.0, margin_upper=-1.0)

    widened = post(URL["predict"], body).json()

    level = raw["predicted_battery_percentage"]
    assert widened["predicted_battery_percentage"] == level  # only the interval moves
    low, high = raw["confidence_interval"]["lower"], raw["confidence_interval"]["upper"]
    assert low > 6 and high - level > 1  # room on both sides to move
    assert widened["confidence_interval"]["lower"] == pytest.approx(low - 6.0, abs=0.02)
    assert widened["confidence_interval"]["upper"] == pytest.approx(high - 1.0, abs=0.02)
    stored = Prediction.objects.get(prediction_id=widened["prediction_id"])
    assert (stored.confidence_lower, stored.confidence_upper) == (
        widened["confidence_interval"]["lower"],
        widened["confidence_interval"]["upper"],
    )


@pytest.mark.django_db
def test_scoring_a_booking_moves_the_margins_of_the_kinds_that_predicted_it(post):
    created = post(URL["created"], CREATED).json()
    assert Prediction.objects.get(prediction_id=created["prediction_id"]).calibration_key == CREATED_KEY
    assert created["confidence_interval"]["lower"] > 5.0

    post(URL["started"], {**STARTED, "actual_battery_at_start": 5.0})  # far below the interval

    row = IntervalCalibration.objects.get(key=CREATED_KEY)
    assert (row.bookings, row.predictions, row.below, row.above) == (1, 1, 1, 0)
    assert row.margin_lower == pytest.approx(STEP * (1 - TAIL))  # the side that missed widens
    assert row.margin_upper == pytest.approx(-STEP * TAIL)  # the side that held narrows a little
    assert row.updated_at is not None
    # The started event re-predicted the car's next booking: a later booking of its cascade, 3 hours ahead.
    later = Prediction.objects.get(booking_external_id="BK789", is_current=True)
    assert later.calibration_key == "pattern|booking.started (cascade)|<6h"


@pytest.mark.django_db
def test_one_booking_counts_once_per_kind_however_many_predictions_it_had():
    at = datetime(2026, 1, 5, tzinfo=UTC)
    scored = [("model|booking.ended|<6h", 40.0, 60.0)] * 3 + [("model|booking.ended|<6h", 55.0, 70.0)]

    calibration_learn(scored=scored, actual=50.0, at=at)

    row = IntervalCalibration.objects.get()
    assert (row.bookings, row.predictions, row.below, row.above) == (1, 4, 1, 0)
    assert row.margin_lower == pytest.approx(STEP * (1 / 4 - TAIL))


@pytest.mark.django_db
def test_margins_stay_within_their_limits():
    at = datetime(2026, 1, 5, tzinfo=UTC)
    low, high = MARGIN_LIMITS
    IntervalCalibration.objects.create(key="k", margin_lower=high - 0.01, margin_upper=low + 0.001)

    calibration_learn(scored=[("k", 40.0, 60.0)], actual=10.0, at=at)

    row = IntervalCalibration.objects.get()
    assert row.margin_lower == pytest.approx(high) and row.margin_upper == pytest.approx(low)


@pytest.mark.django_db
def test_lead_time_runs_from_the_newest_report_of_any_car_but_never_from_the_future(post):
    BatteryReadingFactory(vehicle=VehicleFactory(external_id="78"), level=80.0, recorded_at=T0, charging=False)
    BatteryReadingFactory(vehicle=VehicleFactory(external_id="79"), level=60.0, recorded_at=T0 + timedelta(hours=20))
    future = datetime(2099, 1, 1, tzinfo=UTC)  # a bad clock on some car: not "the present"
    BatteryReadingFactory(vehicle=VehicleFactory(external_id="80"), level=50.0, recorded_at=future)
    body = {**PREDICT_HISTORICAL, "booking_start_time": (T0 + timedelta(hours=30)).isoformat()}

    prediction = post(URL["predict"], body).json()

    # 30 hours after car 78's own reading, but only 10 after the fleet's newest report.
    assert Prediction.objects.get(prediction_id=prediction["prediction_id"]).calibration_key == "pattern|predict|6-24h"
