"""The learning app's periodic tasks (written after every migrate: common/schedules.py). Both take minutes of
CPU, so the training cluster runs them."""

from datetime import timedelta

SCHEDULES = {
    # Retrain on the week's outcomes; promotes only a better challenger.
    "model_retrain_weekly": {
        "func": "learning.tasks.model_retrain_weekly",
        "schedule_type": "W",  # Schedule.WEEKLY
        "repeats": -1,
        "cluster": "training",
    },
    # The champion's inputs of the past week against its training window (shown on the models page).
    # It replays every outcome to rebuild the features point in time.
    "model_drift_weekly": {
        "func": "learning.tasks.model_drift_weekly",
        "schedule_type": "W",  # Schedule.WEEKLY
        "repeats": -1,
        "cluster": "training",
    },
}
# A fresh install has no outcomes to retrain on, and a retrain right after every deploy would only burn CPU.
FIRST_RUN_AFTER = {"model_retrain_weekly": timedelta(days=7)}
