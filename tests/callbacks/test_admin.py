"""The outbox in the admin: the list, the attempt log, the circuits, and "Redeliver now"."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse
from django.utils import timezone
from django.utils.module_loading import import_string
from django_q.models import OrmQ

from callbacks.models import CallbackOutbox, CallbackStatus, CircuitState, EndpointCircuit
from callbacks.services import callback_deliver, callback_enqueue

pytestmark = pytest.mark.django_db


def enqueue(make_predictions) -> CallbackOutbox:
    return callback_enqueue(predictions=make_predictions(1), triggered_by="booking.ended", metadata={})


def test_the_outbox_its_attempts_and_the_circuits_are_visible(staff_client, receiver, make_predictions):
    receiver.script = [(502, {})]
    row = enqueue(make_predictions)
    callback_deliver(outbox_id=row.pk)

    listing = staff_client.get(reverse("admin:callbacks_callbackoutbox_changelist"))
    detail = staff_client.get(reverse("admin:callbacks_callbackoutbox_change", args=[row.pk]))
    circuits = staff_client.get(reverse("admin:callbacks_endpointcircuit_changelist"))

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
            reverse("admin:callbacks_callbackoutbox_changelist"),
            {"action": "redeliver_now", "_selected_action": [str(failed.pk), str(delivered.pk)]},
            follow=True,
        )

    assert response.status_code == 200
    page = response.content.decode()
    assert "1 callback(s) queued for delivery now." in page and "1 already delivered" in page
    failed.refresh_from_db()
    assert failed.status == CallbackStatus.PENDING and failed.next_attempt_at <= timezone.now()
    [task] = OrmQ.objects.all()
    assert (task.task["func"], task.task["args"]) == ("callbacks.tasks.callbacks_dispatch_due", ())

    import_string(task.task["func"])()  # the worker runs the queued dispatch

    assert receiver.accepted_ids == [str(failed.pk)]
    failed.refresh_from_db()
    assert (failed.status, failed.attempts) == (CallbackStatus.DELIVERED, 10)
    assert EndpointCircuit.objects.get().state == CircuitState.CLOSED


# --- who may redeliver, and what may be deleted ------------------------------------------------------------


@pytest.fixture
def clerk(db, client, django_user_model):
    """`clerk(*codenames)`: a logged-in staff member (not a superuser) holding exactly these callbacks permissions."""

    def _clerk(*codenames: str):
        user = django_user_model.objects.create_user("clerk", "clerk@example.com", None, is_staff=True)
        user.user_permissions.add(
            *Permission.objects.filter(content_type__app_label="callbacks", codename__in=codenames)
        )
        client.force_login(user)
        return client

    return _clerk


def failed_row(make_predictions, status=CallbackStatus.FAILED) -> CallbackOutbox:
    """A callback in `status`: failed after its retries, delivered, or pending (as written, due in an hour)."""
    row = enqueue(make_predictions)
    if status == CallbackStatus.PENDING:
        CallbackOutbox.objects.filter(pk=row.pk).update(next_attempt_at=timezone.now() + timedelta(hours=1))
    else:
        CallbackOutbox.objects.filter(pk=row.pk).update(status=status, attempts=9, next_attempt_at=None)
    row.refresh_from_db()
    return row


CHANGELIST = "admin:callbacks_callbackoutbox_changelist"


def test_staff_without_the_redeliver_permission_are_not_offered_the_action_and_cannot_post_it(
    clerk, receiver, make_predictions, django_capture_on_commit_callbacks
):
    client = clerk("view_callbackoutbox")
    row = failed_row(make_predictions)

    listing = client.get(reverse(CHANGELIST))
    assert listing.status_code == 200 and str(row.pk) in listing.content.decode()
    assert "redeliver_now" not in listing.content.decode()

    with django_capture_on_commit_callbacks(execute=True) as queued:
        response = client.post(
            reverse(CHANGELIST), {"action": "redeliver_now", "_selected_action": [str(row.pk)]}, follow=True
        )

    assert response.status_code == 200
    assert "queued for delivery" not in response.content.decode()
    row.refresh_from_db()
    assert (row.status, row.attempts, row.next_attempt_at) == (CallbackStatus.FAILED, 9, None)
    assert queued == [] and not OrmQ.objects.exists()


def test_staff_with_the_redeliver_permission_may_redeliver(
    clerk, receiver, make_predictions, django_capture_on_commit_callbacks
):
    client = clerk("view_callbackoutbox", "redeliver_callbackoutbox")
    row = failed_row(make_predictions)
    assert "redeliver_now" in client.get(reverse(CHANGELIST)).content.decode()

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            reverse(CHANGELIST), {"action": "redeliver_now", "_selected_action": [str(row.pk)]}, follow=True
        )

    assert "1 callback(s) queued for delivery now." in response.content.decode()
    row.refresh_from_db()
    assert row.status == CallbackStatus.PENDING and row.next_attempt_at <= timezone.now()


def test_the_staff_pages_redeliver_needs_the_same_permission(clerk, receiver, make_predictions):
    row = failed_row(make_predictions)
    refused = clerk("view_callbackoutbox", "change_callbackoutbox").post(
        "/admin/dashboard/deliveries/redeliver/", {"outbox_id": [str(row.pk)]}
    )

    assert refused.status_code == 403
    row.refresh_from_db()
    assert row.status == CallbackStatus.FAILED


@pytest.mark.parametrize("status", [CallbackStatus.PENDING, CallbackStatus.FAILED])
def test_a_callback_still_owed_cannot_be_deleted_from_the_admin(clerk, receiver, make_predictions, status):
    client = clerk("view_callbackoutbox", "delete_callbackoutbox")
    row = failed_row(make_predictions, status=status)
    delete_url = reverse("admin:callbacks_callbackoutbox_delete", args=[row.pk])

    assert client.get(delete_url).status_code == 403
    assert client.post(delete_url, {"post": "yes"}).status_code == 403
    assert CallbackOutbox.objects.filter(pk=row.pk, status=status).exists()


def test_the_bulk_delete_refuses_a_selection_holding_an_owed_callback_and_deletes_delivered_ones(
    clerk, receiver, make_predictions
):
    client = clerk("view_callbackoutbox", "delete_callbackoutbox")
    pending = failed_row(make_predictions, status=CallbackStatus.PENDING)
    delivered = failed_row(make_predictions, status=CallbackStatus.DELIVERED)
    both = [str(pending.pk), str(delivered.pk)]

    confirm = client.post(reverse(CHANGELIST), {"action": "delete_selected", "_selected_action": both})
    assert confirm.status_code == 200 and confirm.context["perms_lacking"]  # Django's "you may not delete" page
    refused = client.post(reverse(CHANGELIST), {"action": "delete_selected", "_selected_action": both, "post": "yes"})
    assert refused.status_code == 403
    assert CallbackOutbox.objects.count() == 2

    done = client.post(
        reverse(CHANGELIST), {"action": "delete_selected", "_selected_action": [str(delivered.pk)], "post": "yes"}
    )
    assert done.status_code == 302
    assert list(CallbackOutbox.objects.values_list("pk", flat=True)) == [pending.pk]


def test_delete_queryset_never_deletes_an_owed_callback(rf, make_predictions, receiver, django_user_model):
    from django.contrib import admin as django_admin
    from django.core.exceptions import PermissionDenied

    model_admin = django_admin.site.get_model_admin(CallbackOutbox)
    pending = failed_row(make_predictions, status=CallbackStatus.PENDING)
    request = rf.post("/")
    request.user = django_user_model.objects.create_superuser("root", "root@example.com", None)

    with pytest.raises(PermissionDenied):
        model_admin.delete_queryset(request, CallbackOutbox.objects.all())
    assert CallbackOutbox.objects.filter(pk=pending.pk).exists()
