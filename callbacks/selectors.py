"""Reads of the callback outbox shared by the health check, /metrics and the deliveries page."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db.models import Count, Min

from callbacks.models import CallbackOutbox, CallbackStatus


@dataclass(frozen=True)
class OutboxBacklog:
    counts: dict[str, int]  # every status, 0 when it has no row
    oldest_pending_at: datetime | None

    @property
    def pending(self) -> int:
        return self.counts[CallbackStatus.PENDING]

    def oldest_pending_age_seconds(self, now: datetime) -> float | None:
        if self.oldest_pending_at is None:
            return None
        return max(0.0, (now - self.oldest_pending_at).total_seconds())


def outbox_backlog() -> OutboxBacklog:
    """Callbacks per status and the creation time of the oldest pending one, in one GROUP BY."""
    counts = dict.fromkeys(CallbackStatus.values, 0)
    oldest = None
    for row in CallbackOutbox.objects.values("status").annotate(n=Count("id"), oldest=Min("created_at")).order_by():
        counts[row["status"]] = row["n"]
        if row["status"] == CallbackStatus.PENDING:
            oldest = row["oldest"]
    return OutboxBacklog(counts=counts, oldest_pending_at=oldest)
