"""The state of what we owe Laravel (the callback outbox) and of what Laravel sent us (inbound events).

Counts come from one GROUP BY; the lists are the newest rows only, with a link to the full admin
changelist for anything older.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Max, Prefetch, QuerySet
from django.utils import timezone

from bookings.models import InboundEvent
from callbacks.models import CallbackAttempt, CallbackOutbox, CallbackStatus, EndpointCircuit
from callbacks.selectors import outbox_backlog

RECENT_LIMIT = 50
STATUS_FILTERS = ("", *CallbackStatus.values)


@dataclass(frozen=True)
class OutboxSummary:
    counts: dict[str, int]
    oldest_pending_at: datetime | None
    last_delivered_at: datetime | None

    @property
    def oldest_pending_age(self) -> timedelta | None:
        return None if self.oldest_pending_at is None else timezone.now() - self.oldest_pending_at


def outbox_summary() -> OutboxSummary:
    backlog = outbox_backlog()
    last = CallbackOutbox.objects.filter(status=CallbackStatus.DELIVERED).aggregate(at=Max("delivered_at"))["at"]
    return OutboxSummary(counts=backlog.counts, oldest_pending_at=backlog.oldest_pending_at, last_delivered_at=last)


def callbacks_recent(*, status: str = "", limit: int = RECENT_LIMIT) -> list[CallbackOutbox]:
    """The newest callbacks (optionally of one status) with their attempt log, newest first."""
    qs: QuerySet[CallbackOutbox] = CallbackOutbox.objects.all()
    if status:
        qs = qs.filter(status=status)
    attempts = CallbackAttempt.objects.order_by("number")
    return list(
        qs.defer("body").order_by("-created_at").prefetch_related(Prefetch("attempt_log", queryset=attempts))[:limit]
    )


def circuits() -> list[EndpointCircuit]:
    return list(EndpointCircuit.objects.order_by("endpoint"))


def inbound_events_recent(*, limit: int = RECENT_LIMIT) -> list[InboundEvent]:
    """The newest webhooks Laravel sent, with the response we gave (replays are answered from it)."""
    return list(InboundEvent.objects.select_related("vehicle").order_by("-received_at", "-id")[:limit])
