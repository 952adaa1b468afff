"""Each item of a `predictions.updated` callback carries its prediction's readiness, as Laravel receives it."""

import json

import pytest
from django.utils import timezone

from callbacks.models import CallbackOutbox, CallbackStatus
from callbacks.services import Outcome, callbacks_dispatch_due
from predictions.models import Prediction
from tests.seed_examples import CREATED, URL

pytestmark = pytest.mark.django_db


def test_the_delivered_callback_body_has_readiness_on_every_item(post, receiver):
    later = {
        **CREATED,
        "booking_id": "LATER",
        "starts_at": "2025-11-04T08:00:00Z",
        "ends_at": "2025-11-04T09:00:00Z",
        "planned_distance_km": 100,
    }
    assert post(URL["created"], later).status_code == 200
    assert post(URL["created"], {**CREATED, "required_battery": 95}).status_code == 200

    # The first event's prediction update waits: the second's is newer for every booking in it. The second also
    # put both bookings at risk, which their own `booking.readiness_changed` callbacks tell
    # (tests/callbacks/test_readiness_alerts.py).
    assert callbacks_dispatch_due(now=timezone.now()).counts == {Outcome.DELIVERED: 3, Outcome.POSTPONED: 1}
    alerts = CallbackOutbox.objects.filter(event="booking.readiness_changed", status=CallbackStatus.DELIVERED)
    assert sorted(json.loads(a.body)["booking"]["booking_id"] for a in alerts) == ["BK123456", "LATER"]

    row = CallbackOutbox.objects.get(status=CallbackStatus.DELIVERED, event="predictions.updated")
    [received] = [r for r in receiver.received if r.json["event"] == "predictions.updated"]
    assert received.hex_ok
    items = {item["booking_id"]: item for item in received.json["affected_bookings"]}
    assert set(items) == {"BK123456", "LATER"}
    assert items["BK123456"]["readiness"]["required_level"] == 95.0
    assert items["BK123456"]["readiness"]["at_risk"] is True  # 95 % is far above a car predicted near 65 %
    assert items["LATER"]["readiness"]["required_level"] == pytest.approx(100 * 0.32)
    for booking_id, item in items.items():
        stored = Prediction.objects.get(booking_external_id=booking_id, is_current=True)
        assert item["readiness"]["probability_ready"] == stored.probability_ready
        assert item["readiness"]["charge_needed"] == stored.charge_needed
    assert json.loads(row.body) == received.json  # what the outbox stored is what was sent
