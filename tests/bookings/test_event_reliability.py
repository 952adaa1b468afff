"""Duplicates, out-of-order events and bad input: applied once, never corrupting, nothing written."""

import json

import pytest

from bookings.models import BatteryReading, Booking, BookingStatus, InboundEvent
from learning.models import VehiclePattern
from tests.seed_examples import CANCELLED, CREATED, ENDED, MODIFIED, STARTED, URL
from tests.tables import table_counts

pytestmark = pytest.mark.django_db


# --- duplicates ---------------------------------------------------------------------------------


def test_the_same_event_twice_is_applied_once_and_answered_with_the_first_response(post):
    post(URL["created"], CREATED)
    post(URL["started"], STARTED)
    first = post(URL["ended"], ENDED)
    before = table_counts()

    again = post(URL["ended"], ENDED)

    assert again.status_code == 200
    assert again.json() == first.json()
    assert again["Idempotent-Replayed"] == "true"
    assert table_counts() == before
    pattern = VehiclePattern.objects.get()
    assert pattern.total_bookings == 1 and pattern.drive_observations == 1
    assert InboundEvent.objects.get(event_type="booking.ended").duplicates == 1


def test_a_webhook_id_with_the_same_body_is_a_replay(post):
    first = post(URL["created"], CREATED, HTTP_WEBHOOK_ID="msg_1")

    again = post(URL["created"], CREATED, HTTP_WEBHOOK_ID="msg_1")

    assert again.json() == first.json() and again["Idempotent-Replayed"] == "true"
    assert BatteryReading.objects.count() == 1


def test_an_idempotency_key_header_works_too(post):
    post(URL["created"], CREATED, HTTP_IDEMPOTENCY_KEY="k-1")
    post(URL["created"], CREATED, HTTP_IDEMPOTENCY_KEY="k-1")
    post(URL["created"], CREATED, HTTP_IDEMPOTENCY_KEY="k-2")

    assert InboundEvent.objects.count() == 2


def test_a_start_delivered_twice_with_a_new_body_does_not_learn_twice(post):
    post(URL["created"], CREATED)
    post(URL["started"], STARTED)
    corrections = VehiclePattern.objects.get().error_corrections

    body = post(URL["started"], {**STARTED, "actual_battery_at_start": 20.0}).json()

    assert body["status"] == "ignored"
    assert "already active" in body["notes"][0]
    assert Booking.objects.get(external_id="BK123456").battery_at_start == 60.5
    assert VehiclePattern.objects.get().error_corrections == corrections
    assert BatteryReading.objects.filter(level=20.0).count() == 0


# --- out of order -------------------------------------------------------------------------------


def test_ended_before_started_completes_the_booking_and_a_late_start_changes_nothing(post):
    post(URL["created"], CREATED)

    ended = post(URL["ended"], ENDED).json()

    assert ended["status"] == "success" and ended["outcome_recorded"] is True
    assert any("never received" in note for note in ended["notes"])
    booking = Booking.objects.get(external_id="BK123456")
    assert booking.status == BookingStatus.COMPLETED
    assert booking.battery_at_start == 60.5 and booking.battery_at_end == 48.0
    assert ended["prediction_error"] is not None  # the creation prediction was scored from the end event
    before = table_counts()

    late = post(URL["started"], STARTED).json()

    assert late["status"] == "ignored" and "already completed" in late["notes"][0]
    after = table_counts()
    assert after.pop("InboundEvent") == before.pop("InboundEvent") + 1
    after.pop("Prediction"), before.pop("Prediction")  # the cascade re-predicts BK789
    assert after == before
    assert Booking.objects.get(external_id="BK123456").status == BookingStatus.COMPLETED


def test_started_after_cancelled_keeps_the_booking_cancelled(post):
    post(URL["created"], CREATED)
    post(URL["cancelled"], CANCELLED)

    body = post(URL["started"], STARTED).json()

    assert body["status"] == "ignored"
    assert body["booking_status"] == "cancelled"
    assert "already cancelled" in body["notes"][0]
    assert Booking.objects.get(external_id="BK123456").status == BookingStatus.CANCELLED
    assert not BatteryReading.objects.filter(source="booking_started").exists()


def test_modified_after_cancelled_is_ignored(post):
    post(URL["created"], CREATED)
    post(URL["cancelled"], CANCELLED)

    body = post(URL["modified"], MODIFIED).json()

    assert body["status"] == "ignored" and body["prediction_updated"] is False
    assert Booking.objects.get(external_id="BK123456").scheduled_start.hour == 19


def test_cancelled_before_created_records_the_booking_as_cancelled(post):
    cancelled = post(URL["cancelled"], CANCELLED).json()
    assert cancelled["status"] == "ignored" and "not known" in cancelled["notes"][0]

    created = post(URL["created"], CREATED).json()

    assert created["status"] == "ignored"
    assert Booking.objects.get(external_id="BK123456").status == BookingStatus.CANCELLED
    assert created["predicted_battery"] is None


def test_started_for_an_unknown_booking_creates_it_active(post):
    body = post(URL["started"], STARTED).json()

    assert body["status"] == "success"
    assert "not known" in body["notes"][0]
    booking = Booking.objects.get(external_id="BK123456")
    assert booking.status == BookingStatus.ACTIVE and booking.battery_at_start == 60.5
    assert body["prediction_error"] is None


def test_modifying_an_active_booking_only_moves_its_end(post):
    post(URL["created"], CREATED)
    post(URL["started"], STARTED)

    body = post(URL["modified"], MODIFIED).json()

    booking = Booking.objects.get(external_id="BK123456")
    assert booking.status == BookingStatus.ACTIVE
    assert booking.scheduled_end.isoformat() == "2025-11-03T21:00:00+00:00"
    assert booking.actual_start.isoformat() == "2025-11-03T19:05:00+00:00"
    assert "only its end" in body["notes"][0]
    assert [a["booking_id"] for a in body["affected_bookings"]] == ["BK789"]


def test_an_event_naming_another_car_for_an_active_booking_is_refused(post):
    post(URL["created"], CREATED)
    post(URL["started"], STARTED)
    before = table_counts()

    response = post(URL["ended"], {**ENDED, "vehicle_id": 79})

    assert response.status_code == 409
    assert response.json()["fields"] == {"vehicle_id": [response.json()["detail"]]}
    after = table_counts()
    assert after == before


# --- bad input ----------------------------------------------------------------------------------

BAD_INPUTS = [
    ("created", {**CREATED, "current_battery_level": 100.5}, "current_battery_level"),
    ("created", {**CREATED, "current_battery_level": -1}, "current_battery_level"),
    ("started", {**STARTED, "actual_battery_at_start": 101}, "actual_battery_at_start"),
    ("ended", {**ENDED, "battery_at_end": -0.1}, "battery_at_end"),
    ("created", {**CREATED, "ends_at": "2025-11-03T19:00:00Z"}, "ends_at"),
    ("ended", {**ENDED, "ends_at": "2025-11-03T18:00:00Z"}, "ends_at"),
    ("modified", {**MODIFIED, "new_ends_at": "2025-11-03T17:00:00Z"}, "new_ends_at"),
    ("created", {**CREATED, "starts_at": "2025-11-03T19:00:00"}, "starts_at"),
    ("started", {**STARTED, "actual_started_at": "yesterday at noon"}, "actual_started_at"),
    ("created", {k: v for k, v in CREATED.items() if k != "starts_at"}, "starts_at"),
    ("cancelled", {"vehicle_id": 78}, "booking_id"),
    ("started", {**STARTED, "actual_battery_at_start": "lots"}, "actual_battery_at_start"),
    ("started", {**STARTED, "actual_battery_at_start": True}, "actual_battery_at_start"),
    ("created", {**CREATED, "vehicle_id": {"id": 78}}, "vehicle_id"),
    ("created", {**CREATED, "vehicle_id": ""}, "vehicle_id"),
    ("ended", {**ENDED, "mileage_at_end": 900.0}, "mileage_at_end"),
    (
        "ended",
        {
            **ENDED,
            "future_bookings": [
                {"booking_id": "X", "starts_at": "2025-11-05T10:00:00Z", "ends_at": "2025-11-05T09:00:00Z"}
            ],
        },
        "future_bookings",
    ),
    ("started", {**STARTED, "future_bookings": "BK789"}, "future_bookings"),
]


@pytest.mark.parametrize(("event", "body", "field"), BAD_INPUTS)
def test_bad_input_is_a_400_naming_the_field_and_writes_nothing(post, event, body, field):
    response = post(URL[event], body)

    assert response.status_code == 400, response.json()
    error = response.json()
    assert error["status"] == "error" and error["error"] == "validation_error"
    assert field in error["fields"]
    assert error["detail"].startswith(field)
    assert table_counts() == dict.fromkeys(table_counts(), 0)


def test_a_body_that_is_not_a_json_object_is_a_400(api):
    for raw in ["[1, 2]", "not json", ""]:
        response = api.post(URL["created"], raw, content_type="application/json")
        assert response.status_code == 400
        assert response.json()["status"] == "error"
    assert InboundEvent.objects.count() == 0


def test_a_body_over_one_megabyte_is_a_400_and_writes_nothing(api):
    huge = {**CREATED, "padding": "x" * 1_100_000}

    response = api.post(URL["created"], json.dumps(huge), content_type="application/json")

    assert response.status_code == 400
    assert "1 MB" in response.json()["detail"]
    assert Booking.objects.count() == 0
