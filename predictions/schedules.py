"""Periodic django-q2 schedules, declared in code and written idempotently after every `migrate`.

Add a schedule by adding an entry to `SCHEDULES`; `schedules_declare` creates it or brings its
settings up to date (by `name`) without moving its next run. A schedule removed from this list is
not deleted: delete it in the admin (Django Q > Scheduled tasks) if it should stop.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections
from django.utils import timezone

logger = logging.getLogger(__name__)

# name -> the Schedule fields to keep as written here. `cluster` None: the default cluster runs it.
SCHEDULES: dict[str, dict[str, Any]] = {
    # The outbox's safety net: any pending callback whose queued delivery was lost is sent within a minute.
    "callbacks_dispatch_due": {
        "func": "callbacks.tasks.callbacks_dispatch_due",
        "schedule_type": "I",  # Schedule.MINUTES
        "minutes": 1,
        "repeats": -1,
        "cluster": None,
    },
    # Bookings whose start passed NO_SHOW_GRACE_HOURS ago without a pick-up become no-shows, also on quiet cars.
    "bookings_no_shows_mark": {
        "func": "bookings.tasks.no_shows_mark",
        "schedule_type": "H",  # Schedule.HOURLY
        "repeats": -1,
        "cluster": None,
    },
    # Retrain on the week's outcomes; promotes only a better challenger. Hours of CPU: the training cluster.
    "model_retrain_weekly": {
        "func": "learning.tasks.model_retrain_weekly",
        "schedule_type": "W",  # Schedule.WEEKLY
        "repeats": -1,
        "cluster": "training",
    },
    # The champion's inputs of the past week against its training window (shown on the models page).
    # It replays every outcome to rebuild the features point in time: the training cluster.
    "model_drift_weekly": {
        "func": "learning.tasks.model_drift_weekly",
        "schedule_type": "W",  # Schedule.WEEKLY
        "repeats": -1,
        "cluster": "training",
    },
    # Retention (callbacks/retention.py): old inbound bodies, events, superseded predictions, delivered callbacks.
    "retention_daily": {
        "func": "callbacks.tasks.retention_daily",
        "schedule_type": "D",  # Schedule.DAILY
        "repeats": -1,
        "cluster": None,
    },
}
# A schedule listed here first runs this long after it is created (the others are due at once): a fresh
# install has no outcomes to retrain on, and a retrain right after every deploy would only burn CPU.
FIRST_RUN_AFTER: dict[str, timedelta] = {"model_retrain_weekly": timedelta(days=7)}


def schedules_declare(*, using: str = DEFAULT_DB_ALIAS) -> list[str]:
    """Create or update every schedule in `SCHEDULES`; return their names.

    Safe to run any number of times (`update_or_create` by name; an existing schedule keeps its next
    run). A new schedule is due at once, or after its `FIRST_RUN_AFTER` delay.
    """
    from django_q.models import Schedule  # django_q's models are ready only once apps are loaded

    for name, fields in SCHEDULES.items():
        first = {"next_run": timezone.now() + FIRST_RUN_AFTER[name]} if name in FIRST_RUN_AFTER else {}
        Schedule.objects.using(using).update_or_create(name=name, defaults=fields, create_defaults=fields | first)
    return list(SCHEDULES)


def schedules_on_post_migrate(sender, using: str = DEFAULT_DB_ALIAS, **kwargs) -> None:
    """post_migrate receiver: declare the schedules once django_q's table exists (thin: calls the service)."""
    from django_q.models import Schedule

    if Schedule._meta.db_table not in connections[using].introspection.table_names():
        return
    names = schedules_declare(using=using)
    logger.debug("schedules declared: %s", ", ".join(names))
