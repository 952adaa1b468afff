"""The callbacks app's periodic tasks (written after every migrate: common/schedules.py)."""

SCHEDULES = {
    # The outbox's safety net: any pending callback whose queued delivery was lost is sent within a minute.
    "callbacks_dispatch_due": {
        "func": "callbacks.tasks.callbacks_dispatch_due",
        "schedule_type": "I",  # Schedule.MINUTES
        "minutes": 1,
        "repeats": -1,
        "cluster": None,
    },
    # Retention (callbacks/retention.py): old inbound bodies, events, superseded predictions, delivered callbacks.
    "retention_daily": {
        "func": "callbacks.tasks.retention_daily",
        "schedule_type": "D",  # Schedule.DAILY
        "repeats": -1,
        "cluster": None,
    },
}
