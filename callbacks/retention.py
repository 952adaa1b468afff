"""Retention: what grows without bound is removed once it has outlived its window (docs/operations.md, "Retention").

Four kinds of rows grow with every event and are not needed forever:

- inbound event bodies (up to 1 MB each): blanked after `RETENTION_INBOUND_BODY_DAYS`. The row keeps its
  idempotency key and the stored response, so a replay is still recognised and answered as the first
  delivery was;
- inbound events themselves (the keys): deleted after `RETENTION_INBOUND_EVENT_DAYS`, and only once their
  booking is completed or cancelled. Both statuses are final, so a replay that arrives after its key is gone
  and is applied as new is ignored for that booking (docs/events.md, "Forward-only status");
- superseded predictions (no longer their booking's current one): deleted after
  `RETENTION_SUPERSEDED_PREDICTION_DAYS` once scored or cancelled, when their one use, teaching the interval
  calibration at pick-up, is behind them; a superseded prediction still pending waits for its booking's
  pick-up. Predictions made without a booking id (what-if `/predict` calls) are never scored or shown again
  and count as superseded;
- delivered callbacks and their attempt logs: deleted after `RETENTION_DELIVERED_CALLBACK_DAYS`.

Never removed, whatever the windows: a booking's current prediction (the one Laravel shows, and at pick-up
the scored one the accuracy pages read), bookings, outcomes, readings and patterns (what training learns
from), callbacks still owed (pending, or failed and redeliverable) and their attempts. Nothing deleted here
cascades into those: the only foreign key into these tables is `Prediction.trigger_event` (SET_NULL: a
prediction outlives the event that triggered it, its link cleared), and a callback's attempts are its own.

Rows go in batches of `RETENTION_BATCH_SIZE`, one short transaction each, picked oldest first through an
index, so a first run on a big table never holds a long transaction. Each batch re-checks its predicate
as it deletes, so a row that changed meanwhile is left alone. A window of 0 keeps its rows forever.

It lives in `callbacks`, the highest app whose rows it prunes (bookings' inbound events, predictions, the
outbox), so that it imports only downwards.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef, Q, QuerySet

from bookings.models import FINAL_STATUSES, Booking, InboundEvent
from callbacks.models import CallbackAttempt, CallbackOutbox, CallbackStatus
from predictions.models import Prediction, PredictionStatus

# What one run reports, in the order it runs, with the setting that holds each window.
KINDS: dict[str, str] = {
    "delivered_callbacks": "RETENTION_DELIVERED_CALLBACK_DAYS",
    "superseded_predictions": "RETENTION_SUPERSEDED_PREDICTION_DAYS",
    "inbound_event_bodies": "RETENTION_INBOUND_BODY_DAYS",
    "inbound_events": "RETENTION_INBOUND_EVENT_DAYS",
}


# --- what each window may remove (selectors) ----------------------------------------------------------------


def inbound_event_bodies_prunable(*, older_than: datetime) -> QuerySet[InboundEvent]:
    """Events received before `older_than` that still store their body (index `inbound_event_body_kept`)."""
    return InboundEvent.objects.filter(body__isnull=False, received_at__lt=older_than)


def inbound_events_prunable(*, older_than: datetime) -> QuerySet[InboundEvent]:
    """Events received before `older_than` whose booking is completed or cancelled.

    An event of a booking still scheduled or active, or of one never created (a cancellation that came
    first is remembered by its event alone), is kept: applied again as new, it could still move its booking.
    """
    final = Booking.objects.filter(external_id=OuterRef("booking_external_id"), status__in=FINAL_STATUSES)
    return InboundEvent.objects.filter(Exists(final), received_at__lt=older_than)


def predictions_superseded_prunable(*, older_than: datetime) -> QuerySet[Prediction]:
    """Predictions made before `older_than` that are not current and no longer wait to be scored.

    Index `prediction_superseded_at` (`NOT is_current`) keeps the scan off every booking's current one.
    """
    done = ~Q(status=PredictionStatus.PENDING) | Q(booking_external_id="")
    return Prediction.objects.filter(done, is_current=False, predicted_at__lt=older_than)


def callbacks_delivered_prunable(*, older_than: datetime) -> QuerySet[CallbackOutbox]:
    """Callbacks delivered before `older_than` (index `callback_last_delivered`), and superseded ones written before
    it (never sent: newer numbers went instead). Pending and failed stay."""
    return CallbackOutbox.objects.filter(
        Q(status=CallbackStatus.DELIVERED, delivered_at__lt=older_than)
        | Q(status=CallbackStatus.SUPERSEDED, created_at__lt=older_than)
    )


# --- removing it, in batches (services) -----------------------------------------------------------------------


def _in_batches(
    prunable: QuerySet, *, order_by: str, batch: int, deadline: float | None, apply: Callable[[QuerySet], int]
) -> int:
    """Apply `apply` to `prunable`'s rows, oldest first, `batch` at a time, one transaction per batch.

    Stops when nothing is left, or before starting a batch after `deadline` (`time.monotonic()`).
    """
    total = 0
    while deadline is None or time.monotonic() < deadline:
        with transaction.atomic():
            ids = list(prunable.order_by(order_by).values_list("pk", flat=True)[:batch])
            if not ids:
                break
            total += apply(prunable.filter(pk__in=ids))  # the predicate again: a row changed meanwhile stays
        if len(ids) < batch:
            break
    return total


def inbound_event_bodies_prune(*, older_than: datetime, batch: int, deadline: float | None = None) -> int:
    """Blank the body of every event received before `older_than`; return how many were blanked.

    The key, the stored response and the rest of the row stay, so the event is still answered as a replay.
    """
    return _in_batches(
        inbound_event_bodies_prunable(older_than=older_than),
        order_by="received_at",
        batch=batch,
        deadline=deadline,
        apply=lambda rows: rows.update(body=None),
    )


def inbound_events_prune(*, older_than: datetime, batch: int, deadline: float | None = None) -> int:
    """Delete the events received before `older_than` whose booking is final; return how many.

    Predictions they triggered stay, with `trigger_event` cleared (SET_NULL, in the same transaction).
    """
    return _in_batches(
        inbound_events_prunable(older_than=older_than),
        order_by="received_at",
        batch=batch,
        deadline=deadline,
        apply=lambda rows: rows.only("pk").delete()[1].get(InboundEvent._meta.label, 0),
    )


def predictions_superseded_prune(*, older_than: datetime, batch: int, deadline: float | None = None) -> int:
    """Delete the superseded predictions made before `older_than` that are scored or cancelled; return how many."""
    return _in_batches(
        predictions_superseded_prunable(older_than=older_than),
        order_by="predicted_at",
        batch=batch,
        deadline=deadline,
        apply=lambda rows: rows.delete()[0],
    )


def callbacks_delivered_prune(*, older_than: datetime, batch: int, deadline: float | None = None) -> tuple[int, int]:
    """Delete the callbacks delivered before `older_than` with their attempts; return (callbacks, attempts)."""
    attempts = 0

    def delete(rows: QuerySet[CallbackOutbox]) -> int:
        nonlocal attempts
        _, per_model = rows.only("pk").delete()
        attempts += per_model.get(CallbackAttempt._meta.label, 0)
        return per_model.get(CallbackOutbox._meta.label, 0)

    callbacks = _in_batches(
        callbacks_delivered_prunable(older_than=older_than),
        order_by="created_at",
        batch=batch,
        deadline=deadline,
        apply=delete,
    )
    return callbacks, attempts


# --- every window at once -------------------------------------------------------------------------------------


def retention_windows() -> dict[str, int]:
    """Each kind's window in days, from settings (0: kept forever)."""
    return {kind: getattr(settings, name) for kind, name in KINDS.items()}


def _prunable(kind: str, older_than: datetime) -> QuerySet:
    return {
        "delivered_callbacks": callbacks_delivered_prunable,
        "superseded_predictions": predictions_superseded_prunable,
        "inbound_event_bodies": inbound_event_bodies_prunable,
        "inbound_events": inbound_events_prunable,
    }[kind](older_than=older_than)


def retention_run(
    *, now: datetime, dry_run: bool = False, batch: int | None = None, deadline: float | None = None
) -> dict[str, int | None]:
    """Apply every window as of `now`; return how many rows of each kind went (or would go, with `dry_run`).

    Keys are the `KINDS` plus `callback_attempts` (the attempts deleted with their callbacks); a kind whose
    window is 0 maps to None. With a `deadline` (`time.monotonic()`) a run stops starting batches after it;
    `retention_backlog` then says whether anything is left.
    """
    batch = batch or settings.RETENTION_BATCH_SIZE
    report: dict[str, int | None] = {}
    for kind, days in retention_windows().items():
        if not days:
            report[kind] = None
            if kind == "delivered_callbacks":
                report["callback_attempts"] = None
            continue
        older_than = now - timedelta(days=days)
        if dry_run:
            rows = _prunable(kind, older_than)
            report[kind] = rows.count()
            if kind == "delivered_callbacks":
                report["callback_attempts"] = CallbackAttempt.objects.filter(outbox__in=rows).count()
        elif kind == "delivered_callbacks":
            report[kind], report["callback_attempts"] = callbacks_delivered_prune(
                older_than=older_than, batch=batch, deadline=deadline
            )
        else:
            prune = {
                "superseded_predictions": predictions_superseded_prune,
                "inbound_event_bodies": inbound_event_bodies_prune,
                "inbound_events": inbound_events_prune,
            }[kind]
            report[kind] = prune(older_than=older_than, batch=batch, deadline=deadline)
    return report


def retention_backlog(*, now: datetime) -> bool:
    """Whether any window still has rows to remove as of `now` (after a run that ran out of time)."""
    return any(
        days and _prunable(kind, now - timedelta(days=days)).exists() for kind, days in retention_windows().items()
    )
