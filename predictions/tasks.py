"""django-q2 tasks of the predictions app: each takes ids or nothing and calls one service.

Queued only through `batterypred.queue.queue_on_commit`; periodic ones are declared in
`predictions.schedules`.
"""

from __future__ import annotations

from predictions import outbox, services


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
    return services.predictions_reprice_all(triggered_by=triggered_by)
