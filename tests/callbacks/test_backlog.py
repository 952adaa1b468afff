"""Laravel down while 200 events arrive through the API, then back: every callback is delivered once, in order."""

import socket
from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from callbacks import services as outbox
from callbacks.models import CallbackOutbox, CallbackStatus, CircuitState, EndpointCircuit
from callbacks.services import Outcome, callbacks_dispatch_due
from tests.callbacks.conftest import SECRET
from tests.callbacks.receiver import Receiver
from tests.seed_examples import CREATED, URL

pytestmark = pytest.mark.django_db
EVENTS = 200
T = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


def free_port() -> int:
    """A port nothing listens on (yet): requests to it are refused, as when Laravel is down."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def created(i: int) -> dict:
    start = T + timedelta(hours=3 * i)
    return {
        **CREATED,
        "booking_id": f"BL{i}",
        "vehicle_id": f"car-{i % 20}",
        "starts_at": start.isoformat(),
        "ends_at": (start + timedelta(hours=2)).isoformat(),
    }


def test_a_backlog_built_while_the_receiver_was_down_drains_once_in_creation_order(post, settings):
    port = free_port()
    settings.ML_CALLBACK_URL = f"http://127.0.0.1:{port}/api/ml/predictions-updated"
    settings.ML_WEBHOOK_SECRET = SECRET
    settings.ML_CALLBACK_TIMEOUT_SECONDS = 5.0
    for i in range(EVENTS):
        assert post(URL["created"], created(i)).status_code == 200
    rows = list(CallbackOutbox.objects.order_by("created_at", "id"))
    assert len(rows) == EVENTS
    t0 = timezone.now()

    # Down: the first five attempts are refused, the circuit opens, the other rows are not even tried.
    assert callbacks_dispatch_due(now=t0).counts == {Outcome.RETRY: 5, Outcome.CIRCUIT_OPEN: 1}
    assert callbacks_dispatch_due(now=t0 + timedelta(seconds=30)).counts == {Outcome.CIRCUIT_OPEN: 1}
    assert EndpointCircuit.objects.get().state == CircuitState.OPEN

    receiver = Receiver(secret=SECRET, port=port).start()
    try:
        # Up: after the cool-down one probe goes, succeeds and closes the circuit; the backlog follows.
        report = callbacks_dispatch_due(now=t0 + outbox.CIRCUIT_COOLDOWN + timedelta(seconds=1))
        again = callbacks_dispatch_due(now=t0 + timedelta(days=4))
    finally:
        receiver.stop()

    assert report.counts == {Outcome.DELIVERED: EVENTS} and not report.more
    assert again.counts == {}
    assert receiver.accepted_ids == [str(r.pk) for r in rows]  # each exactly once, in creation order
    assert len(receiver.received) == EVENTS
    assert all(r.hex_ok and r.standard_ok and r.headers["webhook-id"] == r.id for r in receiver.received)
    assert EndpointCircuit.objects.get().state == CircuitState.CLOSED
    delivered = CallbackOutbox.objects.filter(status=CallbackStatus.DELIVERED)
    assert delivered.count() == EVENTS
    assert sorted(delivered.values_list("attempts", flat=True)) == [1] * (EVENTS - 5) + [2] * 5
