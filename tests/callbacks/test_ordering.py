"""Out-of-order callbacks: a retried old callback never overwrites newer numbers in Laravel.

Laravel is played by `LaravelBookings`, which applies the callbacks the receiver accepted in the order they
arrived, item by item, only when an item's `sequence` is newer than what it holds: the controller that
docs/callbacks.md shows. Time is moved by passing `now` to the dispatcher.
"""

from datetime import timedelta

import pytest
from django.utils import timezone

from callbacks.models import CallbackAttempt, CallbackOutbox, CallbackStatus
from callbacks.services import Outcome, callback_deliver, callback_enqueue, callbacks_dispatch_due
from predictions.models import Prediction
from tests.seed_examples import CREATED, MODIFIED, URL

pytestmark = pytest.mark.django_db


class LaravelBookings:
    """The receiving side's bookings table: `booking_id -> (sequence, predicted_battery)`."""

    def __init__(self, receiver, *, guarded: bool = True) -> None:
        self.rows: dict[str, tuple[int, float]] = {}
        for request in receiver.received:
            if not 200 <= request.status < 300:
                continue
            for item in request.json["affected_bookings"]:
                held = self.rows.get(item["booking_id"])
                if not guarded or held is None or item["sequence"] > held[0]:
                    self.rows[item["booking_id"]] = (item["sequence"], item["predicted_battery"])


def newer_prediction(of: Prediction, **changes) -> Prediction:
    """A later prediction of the same booking (a higher id, so a higher sequence), with `changes`."""
    fields = {f.attname: getattr(of, f.attname) for f in Prediction._meta.concrete_fields if f.attname != "id"}
    return Prediction.objects.create(**fields | {"is_current": False} | changes)


def current(booking_id: str) -> Prediction:
    return Prediction.objects.get(booking_external_id=booking_id, is_current=True)


def modified_to(hour: int) -> dict:
    return {
        **MODIFIED,
        "new_starts_at": f"2025-11-03T{hour:02d}:00:00Z",
        "new_ends_at": f"2025-11-03T{hour + 2:02d}:00:00Z",
    }


def test_a_failed_callback_retried_after_newer_ones_is_skipped_and_laravel_holds_the_newest(post, receiver):
    receiver.script = [(500, {})]  # the first attempt of the first callback fails
    post(URL["created"], CREATED)
    [first] = CallbackOutbox.objects.all()
    t0 = timezone.now()
    assert callbacks_dispatch_due(now=t0).counts == {Outcome.RETRY: 1}

    post(URL["modified"], modified_to(17))  # two more events for the car while the first waits for its retry
    post(URL["modified"], modified_to(18))
    second, third = CallbackOutbox.objects.exclude(pk=first.pk).order_by("created_at")
    # The second is stale too, but its newer numbers (the third) are not delivered yet: it waits for them.
    assert callbacks_dispatch_due(now=t0 + timedelta(seconds=1)).counts == {
        Outcome.POSTPONED: 1,
        Outcome.DELIVERED: 1,
    }

    assert callbacks_dispatch_due(now=t0 + timedelta(minutes=10)).counts == {Outcome.SUPERSEDED: 2}

    assert [r.id for r in receiver.received] == [str(first.pk), str(third.pk)]  # the stale ones never went again
    first.refresh_from_db()
    second.refresh_from_db()
    assert first.status == second.status == CallbackStatus.SUPERSEDED and first.next_attempt_at is None
    skipped = CallbackAttempt.objects.get(outbox=first, number=2)
    assert skipped.status_code is None and skipped.error.startswith(
        "not sent: every booking in it has a newer callback"
    )
    assert str(third.pk) in skipped.error and first.last_error == skipped.error
    newest = current("BK123456")
    assert LaravelBookings(receiver).rows["BK123456"] == (newest.pk, newest.predicted_battery)
    assert callbacks_dispatch_due(now=t0 + timedelta(days=4)).counts == {}


def test_every_item_carries_when_it_was_predicted_and_a_sequence_that_grows_per_booking(post, receiver):
    post(URL["created"], CREATED)
    callbacks_dispatch_due(now=timezone.now())
    post(URL["modified"], modified_to(17))
    callbacks_dispatch_due(now=timezone.now())

    items = [r.json["affected_bookings"][0] for r in receiver.received]

    assert [i["booking_id"] for i in items] == ["BK123456", "BK123456"]
    assert items[0]["sequence"] < items[1]["sequence"] == current("BK123456").pk
    assert all(i["predicted_at"].endswith("Z") for i in items)


def test_a_partly_newer_old_callback_is_still_sent_and_laravel_keeps_the_newer_numbers(receiver, make_predictions):
    """The old callback carries X and Y; a newer one only X. Y's numbers are owed, so the old one goes out."""
    x_old, y = make_predictions(2)
    Prediction.objects.filter(pk=x_old.pk).update(is_current=False)
    x_new = newer_prediction(
        x_old, prediction_id="PRED_X_NEW", predicted_battery=11.0, confidence_lower=5.0, is_current=True
    )
    receiver.script = [(500, {})]
    old = callback_enqueue(predictions=[x_old, y], triggered_by="booking.started", metadata={})
    t0 = timezone.now()
    assert callbacks_dispatch_due(now=t0).counts == {Outcome.RETRY: 1}
    callback_enqueue(predictions=[x_new], triggered_by="booking.modified", metadata={})
    assert callbacks_dispatch_due(now=t0 + timedelta(seconds=1)).counts == {Outcome.DELIVERED: 1}

    assert callbacks_dispatch_due(now=t0 + timedelta(minutes=10)).counts == {Outcome.DELIVERED: 1}

    old.refresh_from_db()
    assert old.status == CallbackStatus.DELIVERED
    x, y_id = x_old.booking_external_id, y.booking_external_id
    assert LaravelBookings(receiver).rows == {x: (x_new.pk, 11.0), y_id: (y.pk, y.predicted_battery)}
    assert LaravelBookings(receiver, guarded=False).rows[x] == (x_old.pk, x_old.predicted_battery)  # a plain update()


def test_an_old_callback_waits_for_newer_pending_ones_and_is_sent_if_they_fail_for_good(receiver, make_predictions):
    (older,) = make_predictions(1)
    newer = newer_prediction(older, prediction_id="PRED_NEWER")
    first = callback_enqueue(predictions=[older], triggered_by="booking.created", metadata={})
    second = callback_enqueue(predictions=[newer], triggered_by="booking.modified", metadata={})
    later = timezone.now() + timedelta(hours=2)
    CallbackOutbox.objects.filter(pk=second.pk).update(next_attempt_at=later)  # retrying, due in two hours

    assert callback_deliver(outbox_id=first.pk, now=timezone.now()) == Outcome.POSTPONED
    first.refresh_from_db()
    assert first.status == CallbackStatus.PENDING and first.next_attempt_at > later
    assert str(second.pk) in first.last_error and receiver.received == []

    CallbackOutbox.objects.filter(pk=second.pk).update(status=CallbackStatus.FAILED, next_attempt_at=None)
    assert callback_deliver(outbox_id=first.pk, now=first.next_attempt_at) == Outcome.DELIVERED
    assert receiver.accepted_ids == [str(first.pk)]


def test_a_newer_callback_that_failed_for_good_does_not_supersede(receiver, make_predictions):
    (older,) = make_predictions(1)
    newer = newer_prediction(older, prediction_id="PRED_NEWER")
    first = callback_enqueue(predictions=[older], triggered_by="booking.created", metadata={})
    second = callback_enqueue(predictions=[newer], triggered_by="booking.modified", metadata={})
    CallbackOutbox.objects.filter(pk=second.pk).update(status=CallbackStatus.FAILED, next_attempt_at=None)

    assert callbacks_dispatch_due(now=timezone.now()).counts == {Outcome.DELIVERED: 1}
    assert receiver.accepted_ids == [str(first.pk)]
