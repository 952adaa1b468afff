"""Retention (callbacks/retention.py): what outlived its window goes, in batches; what accuracy, training or an
open delivery needs stays however old; `manage.py prune_data` and the daily schedule run the same service."""

import time
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django.utils.module_loading import import_string
from django_q.models import OrmQ, Schedule

from bookings.models import BatteryReading, Booking, BookingStatus, InboundEvent
from callbacks import retention, tasks
from callbacks.models import CallbackAttempt, CallbackItem, CallbackOutbox, CallbackStatus
from callbacks.retention import retention_backlog, retention_run
from common.schedules import schedules_declare
from learning.models import BookingOutcome
from predictions.models import Prediction, PredictionStatus
from tests.factories import (
    BatteryReadingFactory,
    BookingFactory,
    BookingOutcomeFactory,
    CallbackAttemptFactory,
    CallbackOutboxFactory,
    InboundEventFactory,
    PredictionFactory,
    VehicleFactory,
)

pytestmark = pytest.mark.django_db

DAY = timedelta(days=1)


@pytest.fixture(autouse=True)
def windows(settings):
    """The documented defaults, whatever the environment says."""
    settings.RETENTION_INBOUND_BODY_DAYS = 30
    settings.RETENTION_INBOUND_EVENT_DAYS = 180
    settings.RETENTION_SUPERSEDED_PREDICTION_DAYS = 90
    settings.RETENTION_DELIVERED_CALLBACK_DAYS = 30
    settings.RETENTION_BATCH_SIZE = 1000
    return settings


def superseded(age: timedelta, **fields) -> Prediction:
    """A prediction made `age` ago that a later one replaced; scored at pick-up unless told otherwise."""
    now = timezone.now()
    fields.setdefault("actual_battery", 55.0)
    return PredictionFactory(is_current=False, predicted_at=now - age, booking_start_time=now - age + DAY, **fields)


def delivered(age: timedelta, attempts: int = 1) -> CallbackOutbox:
    row = CallbackOutboxFactory(
        age=age + timedelta(minutes=1), status=CallbackStatus.DELIVERED, delivered_at=timezone.now() - age
    )
    for number in range(1, attempts + 1):
        CallbackAttemptFactory(outbox=row, number=number, status_code=500 if number < attempts else 200)
    return row


def event_of(booking: Booking, age: timedelta, **fields) -> InboundEvent:
    return InboundEventFactory(
        age=age, booking_external_id=booking.external_id, vehicle=booking.vehicle, event_type="booking.ended", **fields
    )


def exists(row) -> bool:
    return type(row).objects.filter(pk=row.pk).exists()


# --- each kind goes once older than its window, and only then ----------------------------------------------


def test_delivered_callbacks_older_than_their_window_go_with_their_attempts():
    old, young = delivered(31 * DAY, attempts=3), delivered(29 * DAY, attempts=2)

    report = retention_run(now=timezone.now())

    assert (report["delivered_callbacks"], report["callback_attempts"]) == (1, 3)
    assert not exists(old) and not CallbackAttempt.objects.filter(outbox_id=old.pk).exists()
    assert exists(young) and CallbackAttempt.objects.filter(outbox=young).count() == 2


def test_superseded_callbacks_go_after_the_same_window_with_their_items():
    old = CallbackOutboxFactory(age=31 * DAY, status=CallbackStatus.SUPERSEDED)
    CallbackItem.objects.create(outbox=old, booking_external_id="BK1", sequence=7)
    young = CallbackOutboxFactory(age=29 * DAY, status=CallbackStatus.SUPERSEDED)

    report = retention_run(now=timezone.now())

    assert report["delivered_callbacks"] == 1
    assert not exists(old) and not CallbackItem.objects.filter(outbox_id=old.pk).exists()
    assert exists(young)


def test_superseded_predictions_older_than_their_window_go_once_scored_or_cancelled():
    old_scored = superseded(91 * DAY)
    old_cancelled = superseded(91 * DAY, actual_battery=None, status=PredictionStatus.CANCELLED)
    old_what_if = superseded(
        91 * DAY, actual_battery=None, booking=None, booking_external_id="", vehicle=VehicleFactory(), user_id=""
    )
    young_scored = superseded(89 * DAY)

    report = retention_run(now=timezone.now())

    assert report["superseded_predictions"] == 3
    assert not any(exists(p) for p in (old_scored, old_cancelled, old_what_if))
    assert exists(young_scored)


def test_inbound_bodies_are_blanked_after_their_window_and_the_key_and_response_stay():
    booking = BookingFactory(status=BookingStatus.SCHEDULED)
    old, young = event_of(booking, 31 * DAY), event_of(booking, 29 * DAY)

    report = retention_run(now=timezone.now())

    assert report["inbound_event_bodies"] == 1
    old.refresh_from_db()
    young.refresh_from_db()
    assert old.body is None
    assert old.response == {"status": "success", "booking_id": booking.external_id}
    assert InboundEvent.objects.filter(idempotency_key=old.idempotency_key).exists()
    assert young.body == {"booking_id": booking.external_id, "vehicle_id": booking.vehicle.external_id}


def test_inbound_events_of_finished_bookings_go_after_their_window():
    completed = BookingFactory(status=BookingStatus.COMPLETED)
    cancelled = BookingFactory(status=BookingStatus.CANCELLED)
    old_completed, old_cancelled = event_of(completed, 181 * DAY), event_of(cancelled, 181 * DAY)
    young = event_of(completed, 179 * DAY)

    report = retention_run(now=timezone.now())

    assert report["inbound_events"] == 2
    assert not exists(old_completed) and not exists(old_cancelled)
    assert exists(young)


def test_a_deleted_event_leaves_the_predictions_it_triggered_with_the_link_cleared():
    booking = BookingFactory(status=BookingStatus.COMPLETED)
    event = event_of(booking, 200 * DAY)
    current = PredictionFactory(booking=booking, actual_battery=61.0, trigger_event=event)

    retention_run(now=timezone.now())

    assert not exists(event)
    current.refresh_from_db()
    assert current.trigger_event is None and current.is_current and current.actual_battery == 61.0


# --- what is never removed ------------------------------------------------------------------------------------


def test_nothing_accuracy_training_or_an_open_delivery_needs_goes_however_old():
    ancient = 3650 * DAY
    now = timezone.now()
    finished = BookingFactory(status=BookingStatus.COMPLETED, scheduled_start=now - ancient)
    scored_current = PredictionFactory(
        booking=finished, actual_battery=58.0, predicted_at=now - ancient, booking_start_time=now - ancient + DAY
    )
    scheduled = BookingFactory(status=BookingStatus.SCHEDULED, scheduled_start=now + DAY)
    unscored_current = PredictionFactory(booking=scheduled, predicted_at=now - ancient)
    # Superseded but its booking not picked up yet: its scoring will still teach the interval calibration.
    waiting = superseded(ancient, booking=scheduled, actual_battery=None)
    outcome = BookingOutcomeFactory(booking=finished)
    reading = BatteryReadingFactory(vehicle=finished.vehicle, recorded_at=now - ancient)
    pending = CallbackOutboxFactory(age=ancient)
    pending_attempt = CallbackAttemptFactory(outbox=pending, status_code=503)
    failed = CallbackOutboxFactory(age=ancient, status=CallbackStatus.FAILED)
    failed_attempt = CallbackAttemptFactory(outbox=failed, status_code=500)
    open_event = event_of(scheduled, ancient)  # applied again as new, it could still move its booking
    active = BookingFactory(status=BookingStatus.ACTIVE)
    active_event = event_of(active, ancient)
    # A cancellation that came before its booking.created: only this row remembers it.
    remembered = InboundEventFactory(age=ancient, event_type="booking.cancelled", booking_external_id="BK-NEVER")

    report = retention_run(now=now)

    assert report == {
        "delivered_callbacks": 0,
        "callback_attempts": 0,
        "superseded_predictions": 0,
        "inbound_event_bodies": 3,  # the bodies go; the rows (keys) stay
        "inbound_events": 0,
    }
    kept = [
        scored_current,
        unscored_current,
        waiting,
        outcome,
        reading,
        finished,
        scheduled,
        active,
        pending,
        pending_attempt,
        failed,
        failed_attempt,
        open_event,
        active_event,
        remembered,
    ]
    assert [row for row in kept if not exists(row)] == []
    scored_current.refresh_from_db()
    assert (scored_current.is_current, scored_current.actual_battery, scored_current.prediction_error) == (
        True,
        58.0,
        -2.0,
    )
    assert BookingOutcome.objects.count() == 1 and BatteryReading.objects.count() == 1


def test_a_window_of_zero_keeps_its_rows_forever(windows):
    windows.RETENTION_SUPERSEDED_PREDICTION_DAYS = 0
    windows.RETENTION_DELIVERED_CALLBACK_DAYS = 0
    prediction, callback = superseded(3650 * DAY), delivered(3650 * DAY)

    report = retention_run(now=timezone.now())

    assert report["superseded_predictions"] is None
    assert report["delivered_callbacks"] is None and report["callback_attempts"] is None
    assert exists(prediction) and exists(callback)
    assert not retention_backlog(now=timezone.now())


# --- batches, dry run, time budget ----------------------------------------------------------------------------


def test_rows_go_in_bounded_batches_oldest_first():
    rows = [superseded((100 + i) * DAY) for i in range(5)]

    with CaptureQueriesContext(connection) as queries:
        assert retention.predictions_superseded_prune(older_than=timezone.now() - 90 * DAY, batch=2) == 5

    deletes = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("DELETE")]
    assert len(deletes) == 3  # 2 + 2 + 1, each in its own transaction
    assert not any(exists(p) for p in rows)


def test_a_run_past_its_deadline_starts_no_batch_and_reports_the_backlog():
    prediction = superseded(100 * DAY)

    report = retention_run(now=timezone.now(), deadline=time.monotonic() - 1)

    assert report["superseded_predictions"] == 0 and exists(prediction)
    assert retention_backlog(now=timezone.now())


def test_a_dry_run_counts_what_would_go_and_changes_nothing():
    completed = BookingFactory(status=BookingStatus.COMPLETED)
    old_event = event_of(completed, 200 * DAY)
    prediction, callback = superseded(100 * DAY), delivered(40 * DAY, attempts=2)
    now = timezone.now()

    would = retention_run(now=now, dry_run=True)

    assert would == {
        "delivered_callbacks": 1,
        "callback_attempts": 2,
        "superseded_predictions": 1,
        "inbound_event_bodies": 1,
        "inbound_events": 1,
    }
    old_event.refresh_from_db()
    assert old_event.body is not None and exists(prediction) and exists(callback)
    assert CallbackAttempt.objects.count() == 2
    assert retention_run(now=now) == would  # the real run then removes exactly what was counted


# --- the command, the task and the schedule -------------------------------------------------------------------


def test_prune_data_prints_what_it_would_delete_and_then_deletes_it():
    prediction, callback = superseded(100 * DAY), delivered(40 * DAY, attempts=2)

    dry = StringIO()
    call_command("prune_data", "--dry-run", stdout=dry)

    assert "superseded predictions (scored, cancelled or without booking) older than 90 days: 1 would delete" in (
        dry.getvalue()
    )
    assert "delivered callbacks older than 30 days: 1 would delete" in dry.getvalue()
    assert "  with their attempts: 2 would delete" in dry.getvalue()
    assert "dry run: nothing was changed" in dry.getvalue()
    assert exists(prediction) and exists(callback)

    out = StringIO()
    call_command("prune_data", stdout=out)

    assert "superseded predictions (scored, cancelled or without booking) older than 90 days: 1 deleted" in (
        out.getvalue()
    )
    assert "delivered callbacks older than 30 days: 1 deleted" in out.getvalue()
    assert "inbound event bodies older than 30 days: 0 blanked" in out.getvalue()
    assert not exists(prediction) and not exists(callback)


def test_prune_data_says_which_windows_keep_forever(windows):
    windows.RETENTION_INBOUND_EVENT_DAYS = 0
    out = StringIO()

    call_command("prune_data", stdout=out)

    assert "inbound events (final bookings): kept forever (RETENTION_INBOUND_EVENT_DAYS=0)" in out.getvalue()


def test_the_daily_task_prunes_and_queues_another_run_while_a_backlog_remains(
    windows, monkeypatch, django_capture_on_commit_callbacks
):
    windows.RETENTION_BATCH_SIZE = 1
    windows.RETENTION_DELIVERED_CALLBACK_DAYS = windows.RETENTION_INBOUND_BODY_DAYS = 0
    windows.RETENTION_INBOUND_EVENT_DAYS = 0  # predictions alone, so the clock below is read only for them
    rows = [superseded((100 + i) * DAY) for i in range(3)]
    clock = iter([0.0, 0.0])  # the deadline, then one batch; after that the budget is spent
    monkeypatch.setattr(retention.time, "monotonic", lambda: next(clock, 1e9))

    with django_capture_on_commit_callbacks(execute=True):
        report = tasks.retention_daily()

    assert report["superseded_predictions"] == 1
    assert sum(exists(p) for p in rows) == 2
    assert [q.task["func"] for q in OrmQ.objects.all()] == ["callbacks.tasks.retention_daily"]


def test_the_daily_task_queues_nothing_once_everything_is_done(django_capture_on_commit_callbacks):
    superseded(100 * DAY)

    with django_capture_on_commit_callbacks(execute=True):
        report = tasks.retention_daily()

    assert report["superseded_predictions"] == 1
    assert OrmQ.objects.count() == 0


def test_the_retention_schedule_is_declared_once_in_code():
    assert Schedule.objects.filter(name="retention_daily").exists()  # written by migrate (post_migrate)

    schedules_declare()
    schedules_declare()

    [schedule] = Schedule.objects.filter(name="retention_daily")
    assert (schedule.func, schedule.schedule_type, schedule.repeats, schedule.cluster) == (
        "callbacks.tasks.retention_daily",
        Schedule.DAILY,
        -1,
        None,
    )
    assert import_string(schedule.func) is tasks.retention_daily
