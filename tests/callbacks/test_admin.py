"""The outbox in the admin: the list, the attempt log, the circuits, and "Redeliver now"."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone
from django.utils.module_loading import import_string
from django_q.models import OrmQ

from predictions.outbox import callback_deliver, callback_enqueue
from predictions.outbox_models import CallbackOutbox, CallbackStatus, CircuitState, EndpointCircuit

pytestmark = pytest.mark.django_db


def enqueue(make_predictions) -> CallbackOutbox:
    return callback_enqueue(predictions=make_predictions(1), triggered_by="booking.ended", metadata={})


def test_the_outbox_its_attempts_and_the_circuits_are_visible(staff_client, receiver, make_predictions):
    receiver.script = [(502, {})]
    row = enqueue(make_predictions)
    callback_deliver(outbox_id=row.pk)

    listing = staff_client.get(reverse("admin:predictions_callbackoutbox_changelist"))
    detail = staff_client.get(reverse("admin:predictions_callbackoutbox_change", args=[row.pk]))
    circuits = staff_client.get(reverse("admin:predictions_endpointcircuit_changelist"))

    assert listing.status_code == detail.status_code == circuits.status_code == 200
    assert str(row.pk) in listing.content.decode() and "Redeliver now" in listing.content.decode()
    assert "HTTP 502" in detail.content.decode()  # the attempt log inline
    assert receiver.url in circuits.content.decode()


def test_redeliver_now_resets_failed_callbacks_and_queues_a_dispatch_that_probes_an_open_circuit(
    staff_client, receiver, make_predictions, django_capture_on_commit_callbacks
):
    failed, delivered = enqueue(make_predictions), enqueue(make_predictions)
    CallbackOutbox.objects.filter(pk=failed.pk).update(status=CallbackStatus.FAILED, attempts=9, next_attempt_at=None)
    CallbackOutbox.objects.filter(pk=delivered.pk).update(status=CallbackStatus.DELIVERED, next_attempt_at=None)
    EndpointCircuit.objects.create(
        endpoint=receiver.url,
        state=CircuitState.OPEN,
        consecutive_failures=9,
        next_probe_at=timezone.now() + timedelta(hours=1),
    )

    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post(
            reverse("admin:predictions_callbackoutbox_changelist"),
            {"action": "redeliver_now", "_selected_action": [str(failed.pk), str(delivered.pk)]},
            follow=True,
        )

    assert response.status_code == 200
    page = response.content.decode()
    assert "1 callback(s) queued for delivery now." in page and "1 already delivered" in page
    failed.refresh_from_db()
    assert failed.status == CallbackStatus.PENDING and failed.next_attempt_at <= timezone.now()
    [task] = OrmQ.objects.all()
    assert (task.task["func"], task.task["args"]) == ("predictions.tasks.callbacks_dispatch_due", ())

    import_string(task.task["func"])()  # the worker runs the queued dispatch

    assert receiver.accepted_ids == [str(failed.pk)]
    failed.refresh_from_db()
    assert (failed.status, failed.attempts) == (CallbackStatus.DELIVERED, 10)
    assert EndpointCircuit.objects.get().state == CircuitState.CLOSED
