"""django-q2 tasks of the learning app: thin, they call services."""

from __future__ import annotations

from learning.selectors import outcomes_all
from learning.training import MIN_OUTCOMES, model_retrain


def model_retrain_weekly() -> str:
    """The weekly retrain (runs on the `training` cluster, never in a web request)."""
    outcomes = outcomes_all()
    if len(outcomes) < MIN_OUTCOMES:
        return f"skipped: {len(outcomes)} outcomes recorded, need {MIN_OUTCOMES}"
    report = model_retrain(outcomes=outcomes)
    return f"{'promoted' if report.promoted else 'kept champion'}: {report.reason}"
