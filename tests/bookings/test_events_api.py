"""The five webhooks with the seed's own example bodies: shapes, values and what is stored."""

import pytest

from bookings.models import BatteryReading, Booking, BookingStatus, InboundEvent
from learning.models import AccuracyMetric, BookingOutcome, UserPattern, VehiclePattern
from predictions.models import Prediction, PredictionStatus
from tests.seed_examples import AFFECTED_KEYS, CANCELLED, CREATED, ENDED, MODIFIED, STARTED, URL

pytestmark = pytest.mark.django_db


def assert_affected_shape(items):
    for item in items:
        assert set(item) >= AFFECTED_KEYS
        assert 0 <= item["confidence_interval"]["lower"] <= item["predicted_battery"]
        assert item["predicted_battery"] <= item["confidence_interval"]["upper"] <= 100
        assert item["prediction_method"] in {"pattern_historical", "pattern_real_time", "pattern_real_time_cascade"}


def test_booking_created_returns_the_seeds_prediction_shape(post):
    response = post(URL["created"], CREATED)

    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["status"] == "success"
    assert body["prediction_id"].startswith("PRED_BK123456_")
    assert body["prediction_method"] == "pattern_real_time"
    assert body["affected_bookings"] == []
    lower, upper = body["confidence_interval"]["lower"], body["confidence_interval"]["upper"]
    assert lower <= body["predicted_battery"] <= upper
    # 31 h parked from 65.5 %: it cannot have lost more than a few points idling, and it may have charged.
    assert 55 < body["predicted_battery"] < 100
    booking = Booking.objects.get(external_id="BK123456")
    assert booking.vehicle.external_id == "78" and booking.user_id == "860"
    assert booking.status == BookingStatus.SCHEDULED
    assert BatteryReading.objects.get().level == 65.5
    assert (
        Prediction.objects.get(booking_external_id="BK123456", is_current=True).prediction_id == body["prediction_id"]
    )


def test_booking_created_re_predicts_later_bookings_of_the_car(post):
    later = {**CREATED, "booking_id": "LATER", "starts_at": "2025-11-04T08:00:00Z", "ends_at": "2025-11-04T09:00:00Z"}
    post(URL["created"], later)

    body = post(URL["created"], CREATED).json()

    assert [a["booking_id"] for a in body["affected_bookings"]] == ["LATER"]
    assert_affected_shape(body["affected_bookings"])
    assert body["affected_bookings"][0]["prediction_method"] == "pattern_real_time_cascade"


def test_booking_started_scores_the_prediction_and_cascades(post):
    created = post(URL["created"], CREATED).json()

    response = post(URL["started"], STARTED)

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "success"
    assert body["prediction_error"] == pytest.approx(60.5 - created["predicted_battery"], abs=0.01)
    assert body["patterns_updated"] is (abs(body["prediction_error"]) > 5)
    assert [a["booking_id"] for a in body["affected_bookings"]] == ["BK789"]
    assert_affected_shape(body["affected_bookings"])
    bk789 = body["affected_bookings"][0]
    assert bk789["starts_at"] == "2025-11-03T22:00:00Z"
    assert bk789["prediction_method"] == "pattern_real_time_cascade"
    # Driven from 60.5 % for the rest of the 2 h booking: lower than at pick-up.
    assert bk789["predicted_battery"] < 60.5
    scored = Prediction.objects.get(prediction_id=created["prediction_id"])
    assert scored.actual_battery == 60.5 and scored.status == PredictionStatus.COMPLETED
    assert scored.prediction_error == pytest.approx(body["prediction_error"], abs=0.01)
    assert Booking.objects.get(external_id="BK123456").status == BookingStatus.ACTIVE
    assert Booking.objects.get(external_id="BK789").user_id == "920"


def test_booking_ended_records_the_outcome_and_learns(post):
    post(URL["created"], CREATED)
    post(URL["started"], STARTED)

    response = post(URL["ended"], ENDED)

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "success"
    assert body["outcome_recorded"] is True
    assert body["drain_rate_updated"] is True
    # (60.5 - 48.0) points over 1 h 45 min: the first observation is the average.
    assert body["new_avg_drain_rate"] == pytest.approx(12.5 / 1.75, abs=0.01)
    assert body["pattern_confidence"] == "low"
    assert body["total_bookings"] == 1
    assert body["queued_for_retraining"] is True
    assert [a["booking_id"] for a in body["affected_bookings"]] == ["BK789"]
    assert_affected_shape(body["affected_bookings"])
    bk789 = body["affected_bookings"][0]
    # Returned at 48 % unplugged, 70 minutes before BK789: a little idle drain, nothing else.
    assert 46.0 < bk789["predicted_battery"] <= 48.0
    assert bk789["prediction_method"] == "pattern_real_time"
    outcome = BookingOutcome.objects.get()
    assert outcome.distance_km == 25.0 and outcome.drain_rate_per_km == pytest.approx(0.5)
    assert outcome.charging_at_end is False
    pattern = VehiclePattern.objects.get(vehicle__external_id="78")
    assert pattern.avg_drain_rate_per_km == pytest.approx(0.5)
    renter = UserPattern.objects.get(user_id="860")
    assert renter.avg_return_battery == 48.0 and renter.total_bookings == 1
    assert renter.avg_duration_hours == pytest.approx(1.75)
    assert (renter.avg_drain_rate_per_km, renter.km_observations) == (pytest.approx(0.5), 1)  # readiness uses it


def test_booking_modified_re_predicts_the_booking_and_the_later_ones(post):
    post(URL["created"], CREATED)

    response = post(URL["modified"], MODIFIED)

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "success" and body["prediction_updated"] is True
    assert [a["booking_id"] for a in body["affected_bookings"]] == ["BK123456", "BK789"]
    assert_affected_shape(body["affected_bookings"])
    own, later = body["affected_bookings"]
    assert own["starts_at"] == "2025-11-03T18:00:00Z"
    assert later["predicted_battery"] < own["predicted_battery"]  # BK123456 drives the car before BK789
    booking = Booking.objects.get(external_id="BK123456")
    assert booking.scheduled_start.isoformat() == "2025-11-03T18:00:00+00:00"


def test_booking_cancelled_re_predicts_the_later_bookings(post):
    post(URL["created"], CREATED)
    with_cancelled = post(URL["modified"], MODIFIED).json()["affected_bookings"][1]["predicted_battery"]

    response = post(URL["cancelled"], CANCELLED)

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "success" and body["prediction_cancelled"] is True
    assert [a["booking_id"] for a in body["affected_bookings"]] == ["BK789"]
    assert_affected_shape(body["affected_bookings"])
    # Without BK123456's trip before it, BK789 finds the car fuller.
    assert body["affected_bookings"][0]["predicted_battery"] > with_cancelled
    assert Booking.objects.get(external_id="BK123456").status == BookingStatus.CANCELLED
    assert set(Prediction.objects.filter(booking_external_id="BK123456").values_list("status", flat=True)) == {
        PredictionStatus.CANCELLED
    }


def test_every_event_is_stored_with_the_response_it_got(post):
    for name, body in [("created", CREATED), ("started", STARTED), ("ended", ENDED)]:
        response = post(URL[name], body)
        event = InboundEvent.objects.get(event_type=f"booking.{name}")
        assert event.response == response.json()
        assert event.body == body


def test_vehicle_ids_as_numbers_and_strings_are_the_same_car(post):
    post(URL["created"], CREATED)
    post(URL["started"], {**STARTED, "vehicle_id": "78"})

    assert Booking.objects.get(external_id="BK123456").vehicle.external_id == "78"
    assert Booking.objects.values("vehicle").distinct().count() == 1


def test_pick_ups_add_their_errors_to_one_row_per_day_model_and_method(post):
    """Each pick-up's current prediction adds its error to the day's row (created by the day's first pick-up)."""
    picked = []
    for n, (car, hour) in enumerate([(78, 19), (79, 20)]):
        booking, actual = f"BK-DAY-{n}", 40.0 + 30 * n
        starts = f"2025-11-03T{hour}:00:00Z"
        created = {
            **CREATED,
            "booking_id": booking,
            "vehicle_id": car,
            "starts_at": starts,
            "ends_at": "2025-11-03T22:00:00Z",
        }
        assert post(URL["created"], created).status_code == 200
        current = Prediction.objects.get(booking_external_id=booking, is_current=True)
        started = {
            "booking_id": booking,
            "vehicle_id": car,
            "actual_battery_at_start": actual,
            "actual_started_at": starts,
        }
        assert post(URL["started"], started).status_code == 200
        inside = current.confidence_lower <= actual <= current.confidence_upper
        picked.append((current, AccuracyMetric.increments(actual - current.predicted_battery, inside)))

    (row,) = AccuracyMetric.objects.all()
    first = picked[0][0]
    assert (str(row.date), row.model_version, row.prediction_method) == (
        "2025-11-03",
        first.model_version,
        first.prediction_method,
    )
    assert (picked[1][0].model_version, picked[1][0].prediction_method) == (
        first.model_version,
        first.prediction_method,
    )
    for name in picked[0][1]:
        assert getattr(row, name) == pytest.approx(picked[0][1][name] + picked[1][1][name]), name
    assert row.count == 2


def test_the_daily_metrics_insert_names_every_column_so_the_days_first_pick_up_can_create_its_row():
    """`accuracy_record` creates the day's row with the keys and `AccuracyMetric.increments` alone (no database
    defaults): a column added to the model must be added to the increments too."""
    columns = {f.column for f in AccuracyMetric._meta.concrete_fields if not f.primary_key}

    assert columns == {"date", "model_version", "prediction_method", *AccuracyMetric.increments(1.0, True)}
