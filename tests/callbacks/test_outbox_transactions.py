"""The outbox is transactional: a callback exists if and only if its event committed, and is queued only after that.

Also: what a booking event's callback carries (the same numbers as the event's response), and the
periodic schedule that is the outbox's safety net.
"""

from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.db import transaction
from django.utils.dateparse import parse_datetime
from django.utils.module_loading import import_string
from django_q.models import OrmQ, Schedule

from bookings.models import InboundEvent
from callbacks import services as outbox
from callbacks.models import CallbackOutbox, CallbackStatus
from callbacks.services import DispatchReport, callback_enqueue, callbacks_dispatch_due
from common.schedules import schedules_declare
from events import services as event_services
from tests.seed_examples import CREATED, STARTED, URL

pytestmark = pytest.mark.django_db

NUMBERS = ["booking_id", "predicted_battery", "confidence_interval", "prediction_method", "prediction_id", "starts_at"]


class Boom(Exception):
    pass


def queued() -> list[tuple[str, tuple]]:
    """The tasks waiting in django-q2's ORM broker: (function path, arguments)."""
    return [(q.task["func"], tuple(q.task["args"])) for q in OrmQ.objects.order_by("id")]


def test_a_rolled_back_transaction_leaves_no_row_and_queues_nothing(
    receiver, make_predictions, django_capture_on_commit_callbacks
):
    predictions = make_predictions(2)

    with django_capture_on_commit_callbacks(execute=True) as callbacks, pytest.raises(Boom), transaction.atomic():
        assert callback_enqueue(predictions=predictions, triggered_by="booking.ended", metadata={}) is not None
        raise Boom

    assert callbacks == []
    assert CallbackOutbox.objects.count() == 0
    assert OrmQ.objects.count() == 0
    assert receiver.received == []


def test_an_event_that_fails_after_writing_its_callback_rolls_the_callback_back(
    post, receiver, monkeypatch, django_capture_on_commit_callbacks
):
    def enqueue_then_fail(**kwargs):
        assert outbox.callback_enqueue(**kwargs) is not None
        raise Boom

    monkeypatch.setattr(event_services, "callback_enqueue", enqueue_then_fail)

    with django_capture_on_commit_callbacks(execute=True) as callbacks, pytest.raises(Boom):
        post(URL["created"], CREATED)

    assert callbacks == []
    assert InboundEvent.objects.count() == 0
    assert CallbackOutbox.objects.count() == 0
    assert OrmQ.objects.count() == 0


def test_a_committed_event_queues_one_delivery_task_that_takes_the_outbox_id(
    post, receiver, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        assert post(URL["created"], CREATED).status_code == 200

    [row] = CallbackOutbox.objects.all()
    assert len([c for c in callbacks if "queue_on_commit" in c.__qualname__]) == 1
    assert queued() == [("callbacks.tasks.callback_deliver", (str(row.pk),))]
    func, args = queued()[0]
    import_string(func)(*args)  # what the worker runs
    assert receiver.accepted_ids == [str(row.pk)]
    row.refresh_from_db()
    assert row.status == CallbackStatus.DELIVERED


def test_without_a_callback_url_nothing_is_written_or_queued(post, settings, django_capture_on_commit_callbacks):
    settings.ML_CALLBACK_URL = ""

    with django_capture_on_commit_callbacks(execute=True):
        assert post(URL["created"], CREATED).status_code == 200

    assert CallbackOutbox.objects.count() == 0
    assert OrmQ.objects.count() == 0


def test_the_event_response_and_the_callback_carry_the_same_numbers(post, receiver):
    created = post(URL["created"], CREATED).json()
    started = post(URL["started"], STARTED).json()

    callbacks_dispatch_due()

    by_trigger = {r.json["triggered_by"]: r for r in receiver.received}
    assert set(by_trigger) == {"booking.created", "booking.started"}
    [own] = by_trigger["booking.created"].json["affected_bookings"]
    assert {k: own[k] for k in NUMBERS} == {"booking_id": "BK123456", **{k: created[k] for k in NUMBERS[1:]}}
    callback = by_trigger["booking.started"].json
    assert [{k: a[k] for k in NUMBERS} for a in callback["affected_bookings"]] == [
        {k: a[k] for k in NUMBERS} for a in started["affected_bookings"]
    ]
    assert [a["booking_id"] for a in callback["affected_bookings"]] == ["BK789"]
    assert callback["event"] == "predictions.updated"
    assert callback["id"] == by_trigger["booking.started"].headers["webhook-id"]
    assert parse_datetime(callback["occurred_at"]).utcoffset().total_seconds() == 0
    assert callback["occurred_at"].endswith("Z")
    event = InboundEvent.objects.get(event_type="booking.started")
    assert callback["metadata"] == {
        "vehicle_id": "78",
        "trigger_booking_id": "BK123456",
        "event_id": event.pk,
        "model_version": started["affected_bookings"][0]["model_version"],
        "affected_count": 1,
    }


def test_a_replayed_event_sends_no_second_callback_but_an_ignored_one_that_re_predicted_does(post, receiver):
    post(URL["created"], CREATED)
    post(URL["started"], STARTED, HTTP_WEBHOOK_ID="evt-1")
    post(URL["started"], STARTED, HTTP_WEBHOOK_ID="evt-1")  # replay: answered from the store, nothing re-predicted
    assert CallbackOutbox.objects.count() == 2

    late = post(URL["started"], STARTED, HTTP_WEBHOOK_ID="evt-2").json()  # a second start: ignored, but cascaded

    assert late["status"] == "ignored" and [a["booking_id"] for a in late["affected_bookings"]] == ["BK789"]
    assert CallbackOutbox.objects.count() == 3


def test_the_dispatch_schedule_is_declared_in_code_idempotently():
    assert Schedule.objects.filter(name="callbacks_dispatch_due").exists()  # written by migrate (post_migrate)

    schedules_declare()
    schedules_declare()

    [schedule] = Schedule.objects.filter(name="callbacks_dispatch_due")
    assert (schedule.func, schedule.schedule_type, schedule.minutes, schedule.repeats, schedule.cluster) == (
        "callbacks.tasks.callbacks_dispatch_due",
        Schedule.MINUTES,
        1,
        -1,
        None,
    )
    assert callable(import_string(schedule.func))


def test_a_dispatch_run_that_leaves_a_backlog_queues_the_next_run(
    receiver, make_predictions, monkeypatch, django_capture_on_commit_callbacks
):
    for _ in range(5):
        callback_enqueue(predictions=make_predictions(1), triggered_by="retrain", metadata={})

    report = callbacks_dispatch_due(limit=3)

    assert report == DispatchReport(counts={"delivered": 3}, more=True)
    monkeypatch.setattr(outbox, "callbacks_dispatch_due", lambda: report)
    OrmQ.objects.all().delete()
    with django_capture_on_commit_callbacks(execute=True):
        import_string("callbacks.tasks.callbacks_dispatch_due")()
    assert queued() == [("callbacks.tasks.callbacks_dispatch_due", ())]


def test_the_django_q_config_keeps_timeout_below_retry_and_has_a_training_cluster():
    config = django_settings.Q_CLUSTER
    assert config["timeout"] < config["retry"] and config["max_attempts"] > 0
    assert ("orm" in config) != ("redis" in config)  # django-q2 would pick the ORM broker if both were set
    assert config.get("orm", "default") == "default" and config.get("redis", django_settings.Q_REDIS_URL) == (
        django_settings.Q_REDIS_URL
    )
    training = config["ALT_CLUSTERS"]["training"]
    assert training["timeout"] >= 3600 and training["retry"] > training["timeout"] and training["workers"] == 1
    assert config["timeout"] > outbox.DISPATCH_BUDGET_SECONDS + django_settings.ML_CALLBACK_TIMEOUT_SECONDS


def test_only_the_queue_helper_calls_async_task():
    """Architecture rule: work is queued after commit, through `common.queue.queue_on_commit` only."""
    root = Path(django_settings.BASE_DIR)
    skip = {".venv", "tests", "data", "staticfiles", "node_modules", ".git"}
    callers = sorted(
        str(path.relative_to(root))
        for top in root.iterdir()
        if top.is_dir() and top.name not in skip
        for path in top.rglob("*.py")
        if "async_task(" in path.read_text(encoding="utf-8")
    )
    assert callers == ["common/queue.py"]
