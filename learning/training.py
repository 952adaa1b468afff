"""Training, evaluating and promoting the gap and trip models (the model registry's writes).

Training never runs in a web request: the commands (`train_model`, `retrain`) and the weekly
django-q2 task on the `training` cluster call these services.

`model_retrain` trains a challenger on the recorded outcomes before a time cut and scores it and
the champion on the outcomes after it (a time-based holdout: no model sees the future it is
judged on). The challenger is promoted only when its MAE is lower and its 95 % interval
coverage stays within `COVERAGE_RANGE`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from batterypred.queue import queue_on_commit
from learning import gbm
from learning.compiled import compile_boosters, compiled_dir
from learning.drift import feature_reference
from learning.features import GAP_FEATURES, TRIP_FEATURES, Outcome, Reading, replay
from predictions.champion import artifact_path, champion_forget
from predictions.registry_models import ModelStatus, ModelVersion
from predictions.shadow import shadow_forget_model

logger = logging.getLogger(__name__)

COVERAGE_RANGE = (0.92, 0.98)
MIN_OUTCOMES = 200
HOLDOUT_SHARE = 0.2

Progress = Callable[[str], None]


def model_version_new(source: str, at: datetime | None = None) -> str:
    stamp = (at or timezone.now()).strftime("%Y%m%dT%H%M%S%f")[:-3]
    return f"gbm-{stamp}-{source.replace(':', '')}"[:64]


def segment_frames(outcomes: list[Outcome], readings: Iterable[Reading] = ()) -> tuple[pd.DataFrame, pd.DataFrame]:
    gaps, trips, _ = replay(outcomes, readings)
    return (
        pd.DataFrame(gaps, columns=[*GAP_FEATURES, "target", "at", "end"]),
        pd.DataFrame(trips, columns=[*TRIP_FEATURES, "target", "at", "end"]),
    )


def _register(
    result: gbm.TrainingResult,
    *,
    source: str,
    outcomes: list[Outcome],
    frames: tuple[pd.DataFrame, pd.DataFrame],
    champion_metrics: dict | None = None,
) -> ModelVersion:
    """Save the artifact and write the registry row; `frames` (gaps, trips) are what it was fitted on."""
    path, sha = result.model.save(settings.MODEL_DIR)
    return ModelVersion.objects.create(
        version=result.model.version,
        source=source,
        window_start=min(o.start for o in outcomes),
        window_end=max(o.end for o in outcomes),
        training_rows=result.rows,
        features={"gap": GAP_FEATURES, "trip": TRIP_FEATURES, "quantiles": list(gbm.QUANTILES)},
        hyperparameters={**result.model.params, "rounds": result.model.rounds},
        holdout_metrics=result.metrics,
        champion_metrics=champion_metrics or {},
        calibration={"gap": result.model.gap.scale, "trip": result.model.trip.scale},
        feature_reference=feature_reference(*frames),
        training_seconds=round(result.seconds, 2),
        artifact_path=path.name,
        artifact_sha256=sha,
    )


def model_train(
    *,
    outcomes: list[Outcome],
    source: str,
    readings: Iterable[Reading] = (),
    progress: Progress | None = None,
    params: dict | None = None,
    rounds: int = gbm.DEFAULT_ROUNDS,
) -> ModelVersion:
    """Train on every outcome given (newest 15 % calibrate the intervals) and register a challenger.

    `readings` reported mid-gap add gap rows that start from them (`learning.features.replay`).
    """
    if len(outcomes) < MIN_OUTCOMES:
        raise ValueError(f"{len(outcomes)} outcomes is too few to train on (need {MIN_OUTCOMES})")
    gaps, trips = segment_frames(outcomes, readings)
    result = gbm.train(model_version_new(source), gaps, trips, params=params, rounds=rounds, progress=progress)
    row = _register(result, source=source, outcomes=outcomes, frames=(gaps, trips))
    logger.info("trained %s on %s gaps and %s trips in %.1f s", row.version, len(gaps), len(trips), result.seconds)
    return row


def model_compile(row: ModelVersion, progress: Progress | None = None) -> float | None:
    """Compile `row`'s boosters for this machine (`learning.compiled`); the seconds it took, None if it failed.

    A failure is logged, not raised: the model still serves, with LightGBM's slower predictor.
    """
    try:
        model = gbm.GapTripModel.load(artifact_path(row), row.artifact_sha256)
        return compile_boosters(model, row.artifact_sha256, compiled_dir(settings.MODEL_DIR), progress)
    except Exception:  # lleaves or LLVM missing or failing: an optimisation lost, never a promotion
        logger.exception("could not compile %s, it will serve with LightGBM's predictor", row.version)
        return None


def model_promote(*, version: str, progress: Progress | None = None) -> ModelVersion:
    """Make `version` the champion; the previous champion is retired. Serving picks it up within seconds.

    Its boosters are compiled first (`MODEL_COMPILE`), so the web processes find them when they load it. The
    re-pricing of every scheduled booking (and its callbacks) is queued after the commit. The shadow scores of
    the `model` candidate are forgotten, so the new champion is judged on its own pick-ups.
    """
    if settings.MODEL_COMPILE:
        model_compile(ModelVersion.objects.get(version=version), progress)
    with transaction.atomic():
        row = ModelVersion.objects.select_for_update().get(version=version)
        ModelVersion.objects.filter(status=ModelStatus.CHAMPION).exclude(pk=row.pk).update(status=ModelStatus.RETIRED)
        row.status, row.promoted_at = ModelStatus.CHAMPION, timezone.now()
        row.save(update_fields=["status", "promoted_at"])
        shadow_forget_model()  # the `model` candidate's scores were the previous champion's
        # The new champion's numbers reach Laravel: every scheduled booking re-priced, on the training
        # cluster (long timeout: a large fleet takes minutes).
        queue_on_commit("predictions.tasks.predictions_reprice_all", "model_promoted", cluster="training")
    champion_forget()
    logger.info("promoted %s to champion", version)
    return row


def evaluate(model: gbm.GapTripModel, gaps: pd.DataFrame, trips: pd.DataFrame) -> dict:
    """MAE, bias, within-10 and 95 % coverage of the median over every held-out gap and trip."""
    errors, covered = [], []
    figures: dict = {}
    for kind, frame in (("gap", gaps), ("trip", trips)):
        if frame.empty:
            continue
        q = model.segment(kind).quantiles(gbm.matrix(frame, kind))
        y = frame["target"].to_numpy()
        err = q[:, gbm.MEDIAN] - y
        errors.append(err)
        covered.append((y >= q[:, 0]) & (y <= q[:, -1]))
        figures[kind] = gbm.segment_metrics(model.segment(kind), frame)
    if not errors:
        return figures
    err, cov = np.concatenate(errors), np.concatenate(covered)
    figures |= {
        "rows": len(err),
        "mae": round(float(np.mean(np.abs(err))), 3),
        "bias": round(float(np.mean(err)), 3),
        "within_10": round(float(np.mean(np.abs(err) <= 10)), 4),
        "coverage_95": round(float(np.mean(cov)), 4),
    }
    return figures


@dataclass
class RetrainReport:
    challenger: ModelVersion
    champion: ModelVersion | None
    challenger_metrics: dict
    champion_metrics: dict
    promoted: bool
    reason: str


def _decide(challenger: dict, champion: dict | None) -> tuple[bool, str]:
    low, high = COVERAGE_RANGE
    if not low <= challenger["coverage_95"] <= high:
        return False, f"challenger coverage {challenger['coverage_95']:.3f} outside {low}..{high}"
    if champion is None:
        return True, "no champion serves"
    if challenger["mae"] >= champion["mae"]:
        return False, f"challenger MAE {challenger['mae']:.3f} not below champion's {champion['mae']:.3f}"
    return True, f"challenger MAE {challenger['mae']:.3f} below champion's {champion['mae']:.3f}"


def model_retrain(
    *,
    outcomes: list[Outcome],
    readings: Iterable[Reading] = (),
    holdout_share: float = HOLDOUT_SHARE,
    progress: Progress | None = None,
    rounds: int = gbm.DEFAULT_ROUNDS,
) -> RetrainReport:
    """Train a challenger on outcomes before the time cut, score it and the champion after it, promote if better."""
    if len(outcomes) < MIN_OUTCOMES:
        raise ValueError(f"{len(outcomes)} outcomes recorded; retraining needs at least {MIN_OUTCOMES}")
    gaps, trips = segment_frames(outcomes, readings)
    # Quantile of the timestamps themselves: their integer view is in the column's unit (µs here), not ns.
    cut_at = trips["at"].quantile(1 - holdout_share)
    # Train only on segments whose outcome was known before the cut (a trip that straddles it is in neither).
    fit_gaps, fit_trips = gaps[gaps["end"] < cut_at], trips[trips["end"] < cut_at]
    test_gaps, test_trips = gaps[gaps["at"] >= cut_at], trips[trips["at"] >= cut_at]
    result = gbm.train(model_version_new("outcomes"), fit_gaps, fit_trips, rounds=rounds, progress=progress)
    challenger_metrics = evaluate(result.model, test_gaps, test_trips)
    champion_row = ModelVersion.objects.filter(status=ModelStatus.CHAMPION).first()
    champion_metrics = None
    if champion_row is not None:
        try:
            champion = gbm.GapTripModel.load(artifact_path(champion_row), champion_row.artifact_sha256)
            champion_metrics = evaluate(champion, test_gaps, test_trips)
        except (OSError, ValueError) as exc:
            logger.error("champion %s cannot be loaded for comparison: %s", champion_row.version, exc)
    result.metrics = {**challenger_metrics, "calibration": result.metrics}
    row = _register(
        result,
        source="outcomes",
        outcomes=[o for o in outcomes if o.start < cut_at],
        frames=(fit_gaps, fit_trips),
        champion_metrics=champion_metrics,
    )
    promote, reason = _decide(challenger_metrics, champion_metrics)
    if champion_row is not None and champion_row.window_end and champion_row.window_end >= cut_at:
        # It trained on part of this holdout: its figures flatter it, so a challenger must beat it by more.
        reason += f"; the champion trained on outcomes up to {champion_row.window_end:%Y-%m-%d}, inside the holdout"
    row.notes = reason
    row.save(update_fields=["notes"])
    if promote:
        model_promote(version=row.version)
        row.refresh_from_db()
    logger.info("retrain: %s (%s)", "promoted" if promote else "kept the champion", reason)
    return RetrainReport(row, champion_row, challenger_metrics, champion_metrics or {}, promote, reason)
