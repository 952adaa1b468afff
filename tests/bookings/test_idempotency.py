"""Replays and repeats: a key names one request, and a repeat that would change the state is never dropped."""

import threading

import pytest
from django.db import connections
from rest_framework.test import APIClient

from bookings.models import BatteryReading, Booking, InboundEvent
from events import services
from learning.models import VehiclePattern
from predictions.models import Prediction
from tests.seed_examples import CREATED, ENDED, MODIFIED, STARTED, URL

pytestmark = pytest.mark.django_db


def created(booking_id: str, **extra) -> dict:
    return {**CREATED, "booking_id": booking_id, **extra}


def test_a_key_reused_with_another_body_is_refused_and_nothing_is_applied(post, api):
    first = post(URL["created"], created("A"), HTTP_IDEMPOTENCY_KEY="k1")
    events, readings = InboundEvent.objects.count(), BatteryReading.objects.count()

    second = post(URL["created"], created("B"), HTTP_IDEMPOTENCY_KEY="k1")

    assert first.status_code == 200
    assert second.status_code == 422, second.content
    body = second.json()
    assert body["error"] == "idempotency_key_reused"
    assert list(body["fields"]) == ["Idempotency-Key"]
    assert "booking A" in body["detail"]
    assert "Idempotent-Replayed" not in second
    assert not Booking.objects.filter(external_id="B").exists()
    assert (InboundEvent.objects.count(), BatteryReading.objects.count()) == (events, readings)
    assert api.get("/api/v1/predictions/B").status_code == 404


def test_a_webhook_id_reused_with_another_body_names_that_header(post):
    post(URL["created"], created("A"), HTTP_WEBHOOK_ID="msg_1")

    again = post(URL["created"], created("A", current_battery_level=10.0), HTTP_WEBHOOK_ID="msg_1")

    assert again.status_code == 422
    assert list(again.json()["fields"]) == ["webhook-id"]
    assert not BatteryReading.objects.filter(level=10.0).exists()


def test_the_same_key_and_body_in_another_key_order_is_a_replay(post):
    first = post(URL["created"], created("A"), HTTP_IDEMPOTENCY_KEY="k1")
    reordered = dict(reversed(list(created("A").items())))

    again = post(URL["created"], reordered, HTTP_IDEMPOTENCY_KEY="k1")

    assert again.status_code == 200 and again["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()


def test_a_key_longer_than_what_is_stored_is_refused_not_cut(post):
    stem = "k" * 160
    ok = post(URL["created"], created("A"), HTTP_IDEMPOTENCY_KEY=stem)

    too_long = post(URL["created"], created("B"), HTTP_IDEMPOTENCY_KEY=stem + "x")

    assert ok.status_code == 200
    assert too_long.status_code == 400
    assert too_long.json()["error"] == "invalid_idempotency_key"
    assert list(too_long.json()["fields"]) == ["Idempotency-Key"]
    assert not Booking.objects.filter(external_id="B").exists()


def test_without_a_key_a_modification_back_to_an_earlier_time_is_applied(post, api):
    post(URL["created"], CREATED)
    ten = {**MODIFIED, "new_starts_at": "2025-11-03T10:00:00Z", "new_ends_at": "2025-11-03T12:00:00Z"}
    eleven = {**MODIFIED, "new_starts_at": "2025-11-03T11:00:00Z", "new_ends_at": "2025-11-03T13:00:00Z"}

    post(URL["modified"], ten)
    post(URL["modified"], eleven)
    back = post(URL["modified"], ten)

    assert back.status_code == 200
    assert "Idempotent-Replayed" not in back
    assert back.json()["prediction_updated"] is True
    booking = Booking.objects.get(external_id="BK123456")
    assert booking.scheduled_start.hour == 10
    assert api.get("/api/v1/predictions/BK123456").json()["booking_start_time"] == "2025-11-03T10:00:00Z"


def test_without_a_key_a_retried_delivery_is_answered_from_the_store(post):
    post(URL["created"], CREATED)
    post(URL["started"], STARTED)
    first = post(URL["ended"], ENDED)
    predictions = Prediction.objects.count()

    retry = post(URL["ended"], ENDED)

    assert retry["Idempotent-Replayed"] == "true"
    assert retry.json() == first.json()
    assert Prediction.objects.count() == predictions
    assert InboundEvent.objects.get(event_type="booking.ended").duplicates == 1


def test_without_a_key_an_end_retried_after_other_events_is_answered_from_the_store_and_learned_once(post):
    post(URL["created"], CREATED)
    post(URL["started"], STARTED)
    first = post(URL["ended"], ENDED)
    post(URL["created"], created("BK999", starts_at="2025-11-05T10:00:00Z", ends_at="2025-11-05T12:00:00Z"))
    pattern = VehiclePattern.objects.get()

    late_retry = post(URL["ended"], ENDED)

    assert late_retry["Idempotent-Replayed"] == "true" and late_retry.json() == first.json()
    again = VehiclePattern.objects.get()
    assert (again.total_bookings, again.drive_observations) == (pattern.total_bookings, pattern.drive_observations)
    assert again.avg_drain_rate_per_hour == pattern.avg_drain_rate_per_hour


def test_without_a_key_a_second_end_with_another_body_is_applied_and_ignored_never_learned_twice(post):
    post(URL["created"], CREATED)
    post(URL["started"], STARTED)
    post(URL["ended"], ENDED)
    pattern = VehiclePattern.objects.get()

    other = post(URL["ended"], {**ENDED, "battery_at_end": 30.0})

    assert other.status_code == 200 and "Idempotent-Replayed" not in other
    assert other.json()["status"] == "ignored" and "already completed" in other.json()["notes"][0]
    assert VehiclePattern.objects.get().total_bookings == pattern.total_bookings
    assert Booking.objects.get(external_id="BK123456").battery_at_end == 48.0


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_the_same_key_for_two_cars_at_once_gets_one_application_and_one_clear_refusal(api_key, monkeypatch):
    """Two requests with one key for different cars lock different rows, so both pass the replay check.

    Each waits after its first check until the other has checked too, so both really race to insert.
    """
    bodies = [created("A", vehicle_id=1), created("B", vehicle_id=2)]
    checked = threading.Barrier(2, timeout=10)
    local = threading.local()
    original = services._replay_by_header

    def check_then_wait(**kwargs):
        found = original(**kwargs)
        if not getattr(local, "waited", False):
            local.waited = True
            checked.wait()
        return found

    monkeypatch.setattr(services, "_replay_by_header", check_then_wait)
    answers: list = [None, None]

    def send(index: int) -> None:
        client = APIClient()
        client.credentials(HTTP_X_API_KEY=api_key)
        try:
            answers[index] = client.post(URL["created"], bodies[index], format="json", HTTP_IDEMPOTENCY_KEY="shared")
        finally:
            connections.close_all()

    threads = [threading.Thread(target=send, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert sorted(a.status_code for a in answers) == [200, 422], [a.content for a in answers]
    assert InboundEvent.objects.filter(idempotency_key="booking.created:hdr:shared").count() == 1
    assert Booking.objects.filter(external_id__in=["A", "B"]).count() == 1


def test_without_a_key_a_late_retry_of_created_never_undoes_a_later_modification(post):
    """created (its response lost), then modified, then the platform retries created: a replay, however late."""
    no_time = {k: v for k, v in CREATED.items() if k != "current_timestamp"}  # its level is stamped on receipt
    first = post(URL["created"], no_time)
    post(URL["modified"], {**MODIFIED, "new_starts_at": "2025-11-03T22:00:00Z", "new_ends_at": "2025-11-03T23:00:00Z"})
    readings = BatteryReading.objects.count()

    retry = post(URL["created"], no_time)

    assert retry["Idempotent-Replayed"] == "true" and retry.json() == first.json()
    assert Booking.objects.get(external_id="BK123456").scheduled_start.hour == 22
    assert BatteryReading.objects.count() == readings  # no second reading of the old level stamped "now"


def test_a_key_with_control_characters_is_refused(post):
    response = post(URL["created"], created("A"), HTTP_IDEMPOTENCY_KEY="k\x01y")

    assert response.status_code == 400
    assert list(response.json()["fields"]) == ["Idempotency-Key"]
    assert not Booking.objects.filter(external_id="A").exists()


def test_an_event_stored_before_body_hashes_is_still_recognised_when_retried(post):
    """Rows from before `body_hash` existed carry only the key their body was stored under: still a replay."""
    post(URL["created"], CREATED)
    post(URL["started"], STARTED)
    first = post(URL["ended"], ENDED)
    stored = InboundEvent.objects.get(event_type="booking.ended")
    legacy = services._legacy_body_key("booking.ended", ENDED["booking_id"], ENDED)
    InboundEvent.objects.filter(pk=stored.pk).update(body_hash="", idempotency_key=legacy)

    retry = post(URL["ended"], ENDED)
    other = post(URL["ended"], {**ENDED, "battery_at_end": ENDED["battery_at_end"] - 1})

    assert retry["Idempotent-Replayed"] == "true"
    assert retry.json() == first.json()
    assert InboundEvent.objects.get(pk=stored.pk).duplicates == 1
    assert other.get("Idempotent-Replayed") is None  # another body under no key is a new delivery
    assert InboundEvent.objects.filter(event_type="booking.ended").count() == 2
