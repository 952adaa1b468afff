"""Online interval calibration: each kind of prediction's interval follows what its scored outcomes showed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.core.cache import cache
from django.db import transaction

from bookings.models import ReadingSource
from bookings.selectors import FLEET_CLOCK_CACHE_KEY, fleet_clock, fleet_clock_observe
from bookings.services import reading_record
from common.process_cache import forget
from predictions.calibration import (
    MARGIN_LIMITS,
    MARGINS_CACHE_KEY,
    STEP,
    TAIL,
    calibration_key,
    calibration_learn,
    calibration_margins_cached,
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

    assert calibration_key(predictor="model", trigger="booking.ended", own=True, present=present, target=target) == (
        f"model|booking.ended|{span}"
    )
    assert calibration_key(
        predictor="pattern", trigger="booking.created", own=False, present=present, target=target
    ) == (f"pattern|booking.created (cascade)|{span}")


def test_each_side_moves_out_by_its_own_margin_never_past_the_level_and_within_0_and_100():
    assert interval_widened(50.0, 40.0, 55.0, None) == (40.0, 55.0)
    assert interval_widened(50.0, 40.0, 55.0, (10.0, 2.5)) == (30.0, 57.5)
    assert interval_widened(90.0, 80.0, 96.0, (30.0, 30.0)) == (50.0, 100.0)
    assert interval_widened(10.0, 4.0, 20.0, (8.0, -3.0)) == (0.0, 17.0)
    assert interval_widened(50.0, 45.0, 52.0, (-8.0, -8.0)) == (50.0, 50.0)  # shrinking stops at the level


@pytest.mark.django_db
def test_a_kinds_margins_widen_the_next_prediction_of_that_kind(post, settings):
    settings.PREDICTION_REUSE_SECONDS = 0  # the same question again would be answered with the first answer
    vehicle = VehicleFactory(external_id="78")
    BatteryReadingFactory(vehicle=vehicle, level=80.0, recorded_at=T0, charging=False)
    body = {**PREDICT_HISTORICAL, "booking_start_time": (T0 + timedelta(hours=30)).isoformat()}
    raw = post(URL["predict"], body).json()
    key = Prediction.objects.get(prediction_id=raw["prediction_id"]).calibration_key
    assert key == "pattern|predict|24-72h"
    IntervalCalibration.objects.create(key=key, margin_lower=6.0, margin_upper=-1.0)
    forget(MARGINS_CACHE_KEY)  # written behind the service's back: seen once CALIBRATION_CACHE_SECONDS pass

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
def test_each_kind_of_a_booking_moves_by_its_own_step_in_one_update():
    at = datetime(2026, 1, 5, tzinfo=UTC)
    IntervalCalibration.objects.create(key="b", margin_lower=2.0, margin_upper=-1.0, bookings=3)
    IntervalCalibration.objects.create(key="c", margin_lower=7.0, margin_upper=7.0)  # not scored: stays
    scored = [("a", 40.0, 60.0), ("a", 55.0, 70.0), ("b", 20.0, 45.0), ("b", 20.0, 45.0), ("b", 20.0, 60.0)]

    calibration_learn(scored=scored, actual=50.0, at=at)

    rows = {r.key: r for r in IntervalCalibration.objects.all()}
    a, b, c = rows["a"], rows["b"], rows["c"]
    assert (a.bookings, a.predictions, a.below, a.above, a.updated_at) == (1, 2, 1, 0, at)
    assert (a.margin_lower, a.margin_upper) == (pytest.approx(STEP * (1 / 2 - TAIL)), pytest.approx(-STEP * TAIL))
    assert (b.bookings, b.predictions, b.below, b.above) == (4, 3, 0, 2)
    assert b.margin_lower == pytest.approx(2.0 - STEP * TAIL)
    assert b.margin_upper == pytest.approx(-1.0 + STEP * (2 / 3 - TAIL))
    assert (c.margin_lower, c.margin_upper, c.bookings, c.updated_at) == (7.0, 7.0, 0, None)


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


@pytest.mark.django_db
def test_the_margins_are_read_once_per_cache_time_and_a_process_sees_its_own_learning_at_once(
    django_assert_num_queries, django_capture_on_commit_callbacks
):
    at = datetime(2026, 1, 5, tzinfo=UTC)
    IntervalCalibration.objects.create(key="k", margin_lower=1.0, margin_upper=2.0)
    with django_assert_num_queries(1):
        assert calibration_margins_cached() == {"k": (1.0, 2.0)}
        assert calibration_margins_cached() == {"k": (1.0, 2.0)}  # from the cache
    IntervalCalibration.objects.filter(key="k").update(margin_lower=9.0)  # another process's write
    assert calibration_margins_cached() == {"k": (1.0, 2.0)}  # not yet seen

    with django_capture_on_commit_callbacks(execute=True):
        calibration_learn(scored=[("k", 40.0, 60.0)], actual=50.0, at=at)

    lower, upper = calibration_margins_cached()["k"]  # this process's own learning: read again after commit
    assert lower == pytest.approx(9.0 - STEP * TAIL) and upper == pytest.approx(2.0 - STEP * TAIL)


@pytest.mark.django_db
def test_the_fleet_clock_moves_with_each_committed_reading_and_rereads_the_database_when_its_time_is_up(
    settings, django_assert_num_queries
):
    now = T0 + timedelta(days=1)
    car = VehicleFactory(external_id="78")
    BatteryReadingFactory(vehicle=car, level=80.0, recorded_at=T0)
    with django_assert_num_queries(1):
        assert fleet_clock(now=now) == T0
        assert fleet_clock(now=now) == T0  # from the cache

    fleet_clock_observe(T0 + timedelta(hours=2))  # a reading this process committed
    fleet_clock_observe(T0 + timedelta(hours=1))  # an older one does not move it back
    fleet_clock_observe(datetime(2099, 1, 1, tzinfo=UTC))  # nor does one from a car with a bad clock
    with django_assert_num_queries(0):
        assert fleet_clock(now=now) == T0 + timedelta(hours=2)

    BatteryReadingFactory(vehicle=car, level=70.0, recorded_at=T0 + timedelta(hours=5))  # another process's
    assert fleet_clock(now=now) == T0 + timedelta(hours=2)  # seen only when the cache time is up
    at, _ = cache.get(FLEET_CLOCK_CACHE_KEY)
    cache.set(FLEET_CLOCK_CACHE_KEY, (at, 0.0))  # its time is up
    assert fleet_clock(now=now) == T0 + timedelta(hours=5)
    assert fleet_clock(now=T0 + timedelta(hours=3)) == T0  # never later than `now`: the database's newest before it

    settings.FLEET_CLOCK_CACHE_SECONDS = 0
    BatteryReadingFactory(vehicle=car, level=60.0, recorded_at=T0 + timedelta(hours=6))
    assert fleet_clock(now=now) == T0 + timedelta(hours=6)


@pytest.mark.django_db
def test_a_reading_moves_the_fleet_clock_only_when_its_transaction_commits(django_capture_on_commit_callbacks):
    car = VehicleFactory(external_id="78")
    BatteryReadingFactory(vehicle=car, level=80.0, recorded_at=T0)
    assert fleet_clock(now=T0 + timedelta(days=1)) == T0  # cached
    later = T0 + timedelta(hours=3)

    with django_capture_on_commit_callbacks(execute=True), pytest.raises(RuntimeError), transaction.atomic():
        reading_record(vehicle=car, level=70.0, at=later, source=ReadingSource.PREDICT_REQUEST)
        raise RuntimeError("the request failed after its reading was written")
    assert fleet_clock(now=T0 + timedelta(days=1)) == T0

    with django_capture_on_commit_callbacks(execute=True):
        reading_record(vehicle=car, level=70.0, at=later, source=ReadingSource.PREDICT_REQUEST)
    assert fleet_clock(now=T0 + timedelta(days=1)) == later
