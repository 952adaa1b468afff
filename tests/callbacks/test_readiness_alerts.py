"""`booking.readiness_changed`: Laravel is told, signed, once and in order, when a booking becomes at risk or stops
being, with the free cars most likely to be ready for it (issue 16).

Car 78 reported 65.5 % on 2025-11-02 at 12:00 (the seed's booking-created), and its booking BK123456 starts 31 hours
later: needing 95 % it is at risk, needing 20 % it is not. The receiver is a real HTTP server on loopback.
"""

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from bookings.models import Booking, Vehicle
from callbacks.models import CallbackOutbox, CallbackStatus
from callbacks.readiness import READINESS_EVENT
from callbacks.services import Outcome, callbacks_dispatch_due
from predictions.models import Prediction
from tests.seed_examples import CREATED, MODIFIED, PREDICT_REAL_TIME, URL

pytestmark = pytest.mark.django_db


def alerts() -> list[dict]:
    return [json.loads(row.body) for row in CallbackOutbox.objects.filter(event=READINESS_EVENT).order_by("created_at")]


def delivered_alerts(receiver) -> list[dict]:
    return [r.json for r in receiver.received if r.json["event"] == READINESS_EVENT and 200 <= r.status < 300]


def modified_need(**need) -> dict:
    return {**MODIFIED, "new_starts_at": CREATED["starts_at"], "new_ends_at": CREATED["ends_at"], **need}


def test_a_booking_that_becomes_at_risk_is_told_once_signed_with_its_readiness(post, receiver):
    body = {**CREATED, "required_battery": 95}
    assert post(URL["created"], body, HTTP_IDEMPOTENCY_KEY="created-1").status_code == 200
    assert post(URL["created"], body, HTTP_IDEMPOTENCY_KEY="created-1").status_code == 200  # a replay: told once

    assert callbacks_dispatch_due(now=timezone.now()).counts == {Outcome.DELIVERED: 2}
    [request] = [r for r in receiver.received if r.json["event"] == READINESS_EVENT]
    assert request.hex_ok and request.standard_ok
    sent = request.json
    stored = Prediction.objects.get(booking_external_id="BK123456", is_current=True)
    assert sent["booking"]["booking_id"] == "BK123456"
    assert sent["booking"]["vehicle_id"] == "78"
    assert sent["booking"]["ends_at"] == "2025-11-03T21:00:00Z"
    assert sent["booking"]["sequence"] == stored.pk
    assert (sent["at_risk"], sent["was_at_risk"]) == (True, False)
    assert sent["booking"]["readiness"]["probability_ready"] == stored.probability_ready < 0.9
    assert sent["booking"]["readiness"]["required_level"] == 95.0
    assert sent["triggered_by"] == "booking.created"
    assert Booking.objects.get(external_id="BK123456").readiness_at_risk is True
    assert sent["suggested_vehicles"] == []  # no other car in the fleet


def test_a_booking_that_is_not_at_risk_is_not_told(post, receiver):
    body = post(URL["created"], {**CREATED, "required_battery": 20}).json()
    assert body["readiness"]["at_risk"] is False
    assert alerts() == []
    assert Booking.objects.get(external_id="BK123456").readiness_at_risk is None


def test_a_booking_at_risk_far_ahead_is_told_once_a_prediction_inside_the_window_still_finds_it(
    post, receiver, settings
):
    settings.READINESS_ALERT_HOURS = 24  # the booking starts 31 hours after the car's last level
    assert post(URL["created"], {**CREATED, "required_battery": 95}).json()["readiness"]["at_risk"] is True
    assert alerts() == []

    later = {**PREDICT_REAL_TIME, "current_timestamp": "2025-11-03T06:00:00Z", "intermediate_bookings": []}
    assert post(URL["predict"], later).json()["readiness"]["at_risk"] is True  # 13 hours ahead now
    [alert] = alerts()
    assert alert["triggered_by"] == "predict"
    assert alert["booking"]["booking_id"] == "BK123456" and alert["at_risk"] is True


def test_a_booking_that_stops_being_at_risk_is_told_with_a_newer_sequence_and_no_swaps(post, receiver):
    post(URL["created"], {**CREATED, "required_battery": 95})
    assert post(URL["modified"], modified_need(required_battery=20)).status_code == 200

    first, second = alerts()
    assert (second["at_risk"], second["was_at_risk"]) == (False, True)
    assert second["booking"]["sequence"] > first["booking"]["sequence"]
    assert second["suggested_vehicles"] == []
    assert second["triggered_by"] == "booking.modified"
    assert Booking.objects.get(external_id="BK123456").readiness_at_risk is False
    post(URL["modified"], modified_need(required_battery=25))  # still fine: nothing more to tell
    assert len(alerts()) == 2


def _car(post, car: int, zone: str, level: float, starts_at: str = "2025-11-20T10:00:00Z") -> None:
    """A car in `zone` that reported `level` when its (later, or overlapping) booking was created."""
    booking = {
        **CREATED,
        "booking_id": f"OTHER-{car}",
        "vehicle_id": car,
        "zone": zone,
        "starts_at": starts_at,
        "ends_at": (timezone.datetime.fromisoformat(starts_at) + timedelta(hours=4)).isoformat(),
        "current_battery_level": level,
    }
    assert post(URL["created"], booking).status_code == 200


def test_swaps_are_free_cars_of_the_same_zone_most_likely_ready_first(post, receiver, settings):
    _car(post, 80, "north", 92.0)
    _car(post, 81, "north", 45.0)
    _car(post, 84, "north", 70.0)
    _car(post, 82, "north", 99.0, starts_at="2025-11-03T18:00:00Z")  # busy over the booking's window
    _car(post, 83, "south", 99.0)  # another zone
    settings.READINESS_SWAP_POOL = 2  # only the two fullest free cars of the zone are priced

    post(URL["created"], {**CREATED, "zone": "north", "required_battery": 80})

    [alert] = [a for a in alerts() if a["booking"]["booking_id"] == "BK123456"]
    suggested = alert["suggested_vehicles"]
    assert [s["vehicle_id"] for s in suggested] == ["80", "84"]
    assert suggested[0]["probability_ready"] > suggested[1]["probability_ready"]
    assert all(s["zone"] == "north" for s in suggested)
    assert suggested[0]["confidence_interval"]["lower"] <= suggested[0]["predicted_battery"]
    assert alert["metadata"]["zone"] == "north"
    assert Vehicle.objects.get(external_id="78").zone == "north"
    assert not Prediction.objects.filter(vehicle__external_id__in=["80", "84"], trigger="swap").exists()


def test_without_a_zone_any_free_car_may_be_suggested_and_the_count_is_capped(post, receiver, settings):
    _car(post, 80, "", 92.0)
    _car(post, 83, "south", 99.0)
    settings.READINESS_SUGGESTIONS = 1

    post(URL["created"], {**CREATED, "required_battery": 80})

    [alert] = [a for a in alerts() if a["booking"]["booking_id"] == "BK123456"]
    assert [s["vehicle_id"] for s in alert["suggested_vehicles"]] == ["83"]


def test_an_older_alert_retried_after_a_newer_one_of_its_booking_is_superseded(post, receiver):
    receiver.script = [(500, {})]  # the first request, the at-risk alert, fails
    post(URL["created"], {**CREATED, "required_battery": 95})
    t0 = timezone.now()
    assert callbacks_dispatch_due(now=t0).counts == {Outcome.RETRY: 1, Outcome.DELIVERED: 1}

    post(URL["modified"], modified_need(required_battery=20))  # no longer at risk: a newer alert
    later = t0 + timedelta(minutes=10)
    assert callbacks_dispatch_due(now=later).counts == {Outcome.POSTPONED: 1, Outcome.DELIVERED: 2}
    assert callbacks_dispatch_due(now=later + timedelta(minutes=1)).counts == {Outcome.SUPERSEDED: 1}

    [told] = delivered_alerts(receiver)
    assert told["at_risk"] is False  # Laravel holds the newest state, never the stale one
    first = CallbackOutbox.objects.filter(event=READINESS_EVENT).order_by("created_at").first()
    assert first.status == CallbackStatus.SUPERSEDED


def test_a_newer_prediction_update_never_stands_in_for_an_alert(post, receiver):
    receiver.script = [(500, {})]  # the at-risk alert's first attempt fails
    post(URL["created"], {**CREATED, "required_battery": 95})
    t0 = timezone.now()
    callbacks_dispatch_due(now=t0)

    post(URL["modified"], modified_need(required_battery=90))  # newer numbers, still at risk: no new alert
    assert len(alerts()) == 1
    assert callbacks_dispatch_due(now=t0 + timedelta(minutes=10)).counts == {Outcome.DELIVERED: 2}
    [told] = delivered_alerts(receiver)
    assert told["at_risk"] is True


def test_with_callbacks_off_nothing_is_told_and_nothing_remembered(post, settings):
    settings.ML_CALLBACK_URL = ""
    assert post(URL["created"], {**CREATED, "required_battery": 95}).json()["readiness"]["at_risk"] is True
    assert not CallbackOutbox.objects.exists()
    assert Booking.objects.get(external_id="BK123456").readiness_at_risk is None


def test_a_zone_longer_than_stored_is_a_400_naming_it(post):
    response = post(URL["created"], {**CREATED, "zone": "z" * 65})
    assert response.status_code == 400
    assert "zone" in response.json()["fields"]
    assert not Booking.objects.exists()


def test_a_predict_asking_about_another_need_tells_nothing_and_changes_nothing(post, receiver):
    post(URL["created"], {**CREATED, "required_battery": 20})
    question = {**PREDICT_REAL_TIME, "intermediate_bookings": [], "required_battery": 95}

    assert post(URL["predict"], question).json()["readiness"]["at_risk"] is True

    assert alerts() == []
    assert Booking.objects.get(external_id="BK123456").readiness_at_risk is None


def test_an_alert_that_fails_for_good_is_told_again_by_the_next_prediction(post, receiver):
    receiver.default = (503, {})
    post(URL["created"], {**CREATED, "required_battery": 95})
    alert = CallbackOutbox.objects.get(event=READINESS_EVENT)
    now = timezone.now()
    for _ in range(12):  # every attempt of the retry schedule, days apart
        now += timedelta(days=2)
        callbacks_dispatch_due(now=now)
    alert.refresh_from_db()
    assert alert.status == CallbackStatus.FAILED
    assert not Booking.objects.get(external_id="BK123456").readiness_at_risk  # Laravel was never told

    post(URL["modified"], modified_need(required_battery=90))  # still at risk: told again
    assert [a["at_risk"] for a in alerts()] == [True, True]
