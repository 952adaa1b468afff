"""The staff pages' two writes: queue a retrain, and redeliver callbacks (the outbox does the work)."""

from __future__ import annotations

import logging

from common.queue import queue_on_commit

logger = logging.getLogger(__name__)

RETRAIN_TASK = "learning.tasks.model_retrain_weekly"


def model_retrain_request(*, requested_by: str) -> None:
    """Queue a retrain on the `training` cluster once the request's transaction commits.

    Training takes minutes of CPU, so it never runs in the web request; the task promotes the
    challenger only if it beats the champion, exactly as the weekly schedule does.
    """
    logger.info("retrain requested by %s from the models page", requested_by)
    queue_on_commit(RETRAIN_TASK, cluster="training")
