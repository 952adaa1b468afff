"""Delivery against a real local HTTP receiver: retries on the backoff schedule, Retry-After, the circuit breaker.

Time is moved forward by passing `now` to the services, never by sleeping.
"""

from datetime import timedelta
from email.utils import format_datetime

import pytest
from django.utils import timezone

from callbacks import services as outbox
from callbacks.models import CallbackAttempt, CallbackOutbox, CallbackStatus, CircuitState, EndpointCircuit
from callbacks.services import Outcome, callback_deliver, callback_enqueue, callbacks_dispatch_due

pytestmark = pytest.mark.django_db


def enqueue(make_predictions, count: int = 2) -> CallbackOutbox:
    return callback_enqueue(
        predictions=make_predictions(count), triggered_by="booking.ended", metadata={"vehicle_id": "78"}
    )


def within_jitter(delay: timedelta, nominal: timedelta) -> bool:
    return nominal * (1 - outbox.JITTER) <= delay <= nominal * (1 + outbox.JITTER)


def test_500_500_200_is_three_attempts_on_schedule_and_one_accepted_delivery(receiver, make_predictions):
    receiver.script = [(500, {}), (500, {})]
    row = enqueue(make_predictions)
    t0 = timezone.now()

    assert callbacks_dispatch_due(now=t0).counts == {Outcome.RETRY: 1}
    row.refresh_from_db()
    t1 = row.next_attempt_at
    assert within_jitter(t1 - t0, timedelta(seconds=5))
    assert callbacks_dispatch_due(now=t1 - timedelta(milliseconds=1)).counts == {}  # not due yet: nothing sent
    assert callbacks_dispatch_due(now=t1).counts == {Outcome.RETRY: 1}
    row.refresh_from_db()
    t2 = row.next_attempt_at
    assert within_jitter(t2 - t1, timedelta(minutes=5))
    assert callbacks_dispatch_due(now=t2).counts == {Outcome.DELIVERED: 1}
    assert callbacks_dispatch_due(now=t2 + timedelta(days=4)).counts == {}  # delivered: never sent again

    assert receiver.accepted_ids == [str(row.pk)]
    assert [r.status for r in receiver.received] == [500, 500, 200]
    assert {r.headers["webhook-id"] for r in receiver.received} == {str(row.pk)}
    assert {r.body for r in receiver.received} == {row.body.encode()}
    assert all(r.hex_ok and r.standard_ok for r in receiver.received)
    assert [int(r.headers["webhook-timestamp"]) for r in receiver.received] == [
        int(t.timestamp()) for t in (t0, t1, t2)
    ]
    attempts = list(CallbackAttempt.objects.filter(outbox=row).order_by("number"))
    assert [a.number for a in attempts] == [1, 2, 3]
    assert [a.status_code for a in attempts] == [500, 500, 200]
    assert [a.started_at for a in attempts] == [t0, t1, t2]
    assert [a.next_attempt_at for a in attempts] == [t1, t2, None]
    assert [a.error for a in attempts] == ["HTTP 500", "HTTP 500", ""]
    assert all(a.duration_ms is not None and '"status"' in a.response_excerpt for a in attempts)
    row.refresh_from_db()
    assert (row.status, row.attempts, row.delivered_at, row.last_error) == (CallbackStatus.DELIVERED, 3, t2, "")


def test_the_schedule_spans_about_three_days_then_the_callback_is_failed(receiver, make_predictions):
    receiver.default = (500, {})
    row = enqueue(make_predictions)
    at = timezone.now()
    waits = []
    for _ in range(outbox.MAX_ATTEMPTS - 1):
        assert callback_deliver(outbox_id=row.pk, now=at) == Outcome.RETRY
        row.refresh_from_db()
        waits.append(row.next_attempt_at - at)
        circuit = EndpointCircuit.objects.get(endpoint=row.endpoint)
        at = max(row.next_attempt_at, circuit.next_probe_at or at)  # the circuit opened after 5: wait for the probe

    assert callback_deliver(outbox_id=row.pk, now=at) == Outcome.FAILED
    assert all(within_jitter(w, nominal) for w, nominal in zip(waits, outbox.RETRY_SCHEDULE, strict=True))
    assert timedelta(days=2) < sum(waits, timedelta()) < timedelta(days=3, hours=6)
    row.refresh_from_db()
    assert (row.status, row.attempts, row.next_attempt_at, row.last_error) == (
        CallbackStatus.FAILED,
        9,
        None,
        "HTTP 500",
    )
    assert callback_deliver(outbox_id=row.pk, now=at + timedelta(days=30)) == Outcome.SKIPPED
    assert len(receiver.received) == 9


@pytest.mark.parametrize(
    ("retry_after", "expected"),
    [
        ("120", timedelta(seconds=120)),
        ("at", timedelta(hours=1)),  # an HTTP date one hour after the attempt
        ("99999999", timedelta(hours=24)),  # capped
        ("0", timedelta(seconds=1)),  # floored
    ],
)
def test_retry_after_replaces_the_backoff(receiver, make_predictions, retry_after, expected):
    row = enqueue(make_predictions)
    t0 = (timezone.now() + timedelta(seconds=1)).replace(microsecond=0)  # whole seconds, as HTTP dates are
    if retry_after == "at":
        retry_after = format_datetime(t0 + timedelta(hours=1), usegmt=True)
    receiver.script = [(503, {"Retry-After": retry_after})]

    assert callback_deliver(outbox_id=row.pk, now=t0) == Outcome.RETRY

    row.refresh_from_db()
    assert row.next_attempt_at - t0 == expected
    assert callbacks_dispatch_due(now=t0 + expected - timedelta(seconds=1)).counts == {}
    assert callbacks_dispatch_due(now=t0 + expected).counts == {Outcome.DELIVERED: 1}


def test_an_unreadable_retry_after_falls_back_to_the_schedule(receiver, make_predictions):
    row = enqueue(make_predictions)
    receiver.script = [(429, {"Retry-After": "soon"})]
    t0 = timezone.now()

    callback_deliver(outbox_id=row.pk, now=t0)

    row.refresh_from_db()
    assert within_jitter(row.next_attempt_at - t0, timedelta(seconds=5))


def test_the_circuit_opens_after_consecutive_failures_probes_after_the_cooldown_and_closes(receiver, make_predictions):
    receiver.default = (500, {})
    rows = [enqueue(make_predictions, 1) for _ in range(7)]
    t0 = timezone.now()

    report = callbacks_dispatch_due(now=t0)

    assert report.counts == {Outcome.RETRY: outbox.CIRCUIT_FAILURE_THRESHOLD, Outcome.CIRCUIT_OPEN: 1}
    circuit = EndpointCircuit.objects.get(endpoint=receiver.url)
    assert (circuit.state, circuit.consecutive_failures) == (CircuitState.OPEN, 5)
    assert circuit.next_probe_at == t0 + outbox.CIRCUIT_COOLDOWN
    assert [r.attempts for r in CallbackOutbox.objects.order_by("created_at")] == [1, 1, 1, 1, 1, 0, 0]

    # Open: rows are due (the first five after ~5 s) but nothing is sent until the cool-down ends.
    assert callbacks_dispatch_due(now=t0 + timedelta(seconds=30)).counts == {Outcome.CIRCUIT_OPEN: 1}
    assert len(receiver.received) == 5

    # Cool-down over: exactly one probe (the oldest due row); it fails, so the circuit opens again.
    probe_at = t0 + outbox.CIRCUIT_COOLDOWN + timedelta(seconds=1)
    assert callbacks_dispatch_due(now=probe_at).counts == {Outcome.RETRY: 1, Outcome.CIRCUIT_OPEN: 1}
    assert len(receiver.received) == 6 and receiver.received[-1].id == str(rows[0].pk)
    circuit.refresh_from_db()
    assert circuit.state == CircuitState.OPEN and circuit.next_probe_at == probe_at + outbox.CIRCUIT_COOLDOWN

    # The endpoint recovers: the next probe succeeds, the circuit closes and the backlog drains in creation order.
    receiver.default = (200, {})
    assert callbacks_dispatch_due(now=t0 + timedelta(minutes=10)).counts == {Outcome.DELIVERED: 7}
    assert receiver.accepted_ids == [str(r.pk) for r in rows]
    circuit.refresh_from_db()
    assert (circuit.state, circuit.consecutive_failures, circuit.next_probe_at) == (CircuitState.CLOSED, 0, None)


def test_an_unreachable_endpoint_is_a_failed_attempt_with_the_error_logged(settings, make_predictions):
    settings.ML_CALLBACK_URL = "http://127.0.0.1:9/unreachable"  # the discard port: nothing listens
    row = enqueue(make_predictions)

    assert callback_deliver(outbox_id=row.pk) == Outcome.RETRY

    attempt = CallbackAttempt.objects.get(outbox=row)
    assert attempt.status_code is None and attempt.error.startswith("ConnectError")
    row.refresh_from_db()
    assert row.last_error == attempt.error and row.status == CallbackStatus.PENDING
