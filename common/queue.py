"""The one way to hand work to the django-q2 worker: after the current transaction commits.

A task queued inside a transaction that later rolls back would act on rows that never existed, and a
task queued before the commit can run before its rows are visible to the worker. Queuing from
`transaction.on_commit` avoids both (Zulip's `queue_event_on_commit`). Nothing else in the project
calls `django_q.tasks.async_task`; `tests/callbacks/test_outbox_transactions.py` checks that.

Losing a queued task (broker down at commit time, worker killed while holding it) must never lose
work: every task queued here is a shortcut for something a periodic task also finds in the database
(for callbacks, `callbacks.tasks.callbacks_dispatch_due` delivers any pending outbox row).
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction

logger = logging.getLogger(__name__)


def queue_on_commit(func_path: str, *args: Any, cluster: str | None = None, **kwargs: Any) -> None:
    """Queue `func_path(*args, **kwargs)` on the worker once the current transaction commits.

    Outside a transaction the task is queued at once. `cluster` names one of `Q_CLUSTER["ALT_CLUSTERS"]`
    (e.g. `"training"` for long retraining jobs); `None` is the default cluster. Arguments must be
    plain values (ids, strings), never model instances: the task reads the committed rows itself.
    Keyword names django-q2 reserves for task options (`hook`, `group`, `timeout`, `cluster`, ...) are
    taken as options, not passed to the function.
    A failure to enqueue is logged, not raised, because the transaction has already committed and the
    periodic safety net picks the work up.
    """

    def _enqueue() -> None:
        from django_q.tasks import async_task  # imported late: django_q reads its settings on import

        options = {"cluster": cluster} if cluster else {}
        async_task(func_path, *args, **options, **kwargs)

    transaction.on_commit(_enqueue, robust=True)
