"""After a promotion: every scheduled booking re-priced by the new champion, and Laravel told.

It lives here, above predictions, because it composes the two: predictions computes the numbers
(`predictions.services.predictions_cascade`) and the outbox owes them to Laravel
(`callbacks.services.callback_enqueue`), in one transaction per car. `learning.champion.champion_promoted`
queues it (`callbacks.receivers`), so learning, below both, never calls up into them.
"""

from __future__ import annotations

import logging

from django.db import transaction

from bookings.models import Booking, BookingStatus
from bookings.services import vehicle_lock
from callbacks.services import callback_enqueue
from common.queue import queue_on_commit
from predictions.services import predictions_cascade

logger = logging.getLogger(__name__)

REPRICE_TASK = "callbacks.tasks.predictions_reprice_all"


def predictions_reprice_all_queue(*, triggered_by: str) -> None:
    """Queue `predictions_reprice_all` on the training cluster (long timeout: a large fleet takes minutes),
    once the promoting transaction commits."""
    queue_on_commit(REPRICE_TASK, triggered_by, cluster="training")


def predictions_reprice_all(*, triggered_by: str) -> int:
    """Re-predict every car's scheduled bookings (after a new champion is promoted) and queue the callbacks.

    One transaction per car, holding its lock, so a car's events and its re-pricing never
    interleave and each car's callback is written with its predictions. Returns the number of
    predictions issued.
    """
    vehicle_ids = (
        Booking.objects.filter(status=BookingStatus.SCHEDULED).values_list("vehicle__external_id", flat=True).distinct()
    )
    issued = 0
    for vehicle_id in sorted(set(vehicle_ids)):
        try:
            with transaction.atomic():
                vehicle = vehicle_lock(external_id=vehicle_id)
                predictions = predictions_cascade(vehicle=vehicle, pivot=None, event=None, trigger=triggered_by)
                version = predictions[0].model_version if predictions else None
                callback_enqueue(
                    predictions=predictions,
                    triggered_by=triggered_by,
                    metadata={"vehicle_id": vehicle_id, "model_version": version},
                )
                issued += len(predictions)
        except Exception:  # one car's failure must not leave the rest of the fleet on the old numbers
            logger.exception(
                "re-pricing vehicle %s after %s failed; it keeps its old predictions", vehicle_id, triggered_by
            )
    return issued
