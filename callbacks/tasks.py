"""django-q2 tasks of the callbacks app: each takes ids or nothing and calls one service.

Queued only through `common.queue.queue_on_commit`; periodic ones are declared in
`callbacks/schedules.py`.
"""

from __future__ import annotations

import time

from django.conf import settings
from django.utils import timezone

from callbacks import repricing, retention
from callbacks import services as outbox
from common.queue import queue_on_commit

RETENTION_TASK = "callbacks.tasks.retention_daily"


def callback_deliver(outbox_id: str) -> str:
    """One delivery attempt of a callback, queued when its row commits."""
    return outbox.callback_deliver(outbox_id=outbox_id)


def callbacks_dispatch_due() -> dict[str, int]:
    """Every minute and after "Redeliver now": send every due callback, oldest first.

    While a backlog remains after one run, another run is queued at once rather than a minute later.
    """
    report = outbox.callbacks_dispatch_due()
    if report.more:
        outbox.dispatch_again_soon()
    return report.counts


def predictions_reprice_all(triggered_by: str = "model_promoted") -> int:
    """After a promotion: every scheduled booking re-priced by the new champion, and Laravel told."""
    return repricing.predictions_reprice_all(triggered_by=triggered_by)


def retention_daily() -> dict[str, int | None]:
    """Daily: remove what has outlived its retention window (`callbacks.retention`).

    One run stops starting batches after RETENTION_TASK_BUDGET_SECONDS (below the cluster's 60 s task
    timeout); when rows are left, as on a first run over a big table, another run is queued at once.
    """
    now = timezone.now()
    report = retention.retention_run(now=now, deadline=time.monotonic() + settings.RETENTION_TASK_BUDGET_SECONDS)
    if any(report.values()) and retention.retention_backlog(now=now):
        queue_on_commit(RETENTION_TASK)
    return report
