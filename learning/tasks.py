"""django-q2 tasks of the learning app: thin, they call services."""

from __future__ import annotations

from learning.champion import champion_row
from learning.drift import drift_unavailable_reason, model_drift_check
from learning.selectors import outcomes_all, readings_mid_gap
from learning.training import MIN_OUTCOMES, model_retrain


def model_retrain_weekly() -> str:
    """The weekly retrain (runs on the `training` cluster, never in a web request)."""
    outcomes = outcomes_all()
    if len(outcomes) < MIN_OUTCOMES:
        return f"skipped: {len(outcomes)} outcomes recorded, need {MIN_OUTCOMES}"
    report = model_retrain(outcomes=outcomes, readings=readings_mid_gap())
    return f"{'promoted' if report.promoted else 'kept champion'}: {report.reason}"


def model_drift_weekly() -> str:
    """The weekly drift check of the champion's inputs (on the `training` cluster: it replays every outcome)."""
    check = model_drift_check()
    if check is None:
        return f"skipped: {drift_unavailable_reason(champion_row())}"
    worst = f"; worst {check.worst_feature} PSI {check.max_psi}" if check.worst_feature else ""
    return f"{check.status}: {check.rows.get('gap', 0)} gaps, {check.rows.get('trip', 0)} trips{worst}"
