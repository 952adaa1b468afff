"""Training, evaluating and promoting the gap and trip models (the model registry's writes).

Training never runs in a web request: the commands (`train_model`, `retrain`) and the weekly
django-q2 task on the `training` cluster call these services.

`model_retrain` trains a challenger on the recorded outcomes before a time cut, with the simulated
fleet as a prior whose weight shrinks as outcomes accumulate (`learning.prior`), and prices it and
the champion on the bookings picked up after the cut as the service would have served them: whole
cascades from each car's previous returns (`learning.cascade_eval`), not segment rows. No model
sees the future it is judged on. The challenger is promoted only when its MAE is lower by
PROMOTION_MARGIN, on at least MIN_HOLDOUT_BOOKINGS bookings, and its 95 % interval coverage is
within `COVERAGE_RANGE` (or no further from 95 % than the champion's).
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

from core import gbm
from core.compiled import compile_boosters, compiled_dir
from core.features import GAP_FEATURES, TRIP_FEATURES, Outcome, Reading, replay
from core.simulation.fleet import FleetConfig
from learning.cascade_eval import DEPTH, cascade_metrics, cascade_price, holdout_cascades
from learning.champion import artifact_path, champion_forget
from learning.drift import feature_reference
from learning.models import ModelStatus, ModelVersion
from learning.prior import (
    BOOTSTRAP_FLEET,
    PRIOR_STRENGTH,
    fleet_from_json,
    fleet_to_json,
    prior_rows,
    prior_weight,
)
from learning.signals import champion_promoted

logger = logging.getLogger(__name__)

COVERAGE_RANGE = (0.92, 0.98)
MIN_OUTCOMES = 200
HOLDOUT_SHARE = 0.2
# A challenger must price the held-out bookings at least this much better (relative MAE) to replace the
# champion, on at least this many bookings: a promotion re-prices every booking and restarts the champion's
# shadow scores, so a tie is not worth it. Set by reasoning (as shadow scoring's 5 % and 30), not tuned.
PROMOTION_MARGIN = 0.01
MIN_HOLDOUT_BOOKINGS = 30
# Standard errors of a coverage measured on the held-out bookings by which COVERAGE_RANGE is widened (`_decide`).
COVERAGE_NOISE_SE = 2.0

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
    extra_hyperparameters: dict | None = None,
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
        hyperparameters={**result.model.params, "rounds": result.model.rounds, **(extra_hyperparameters or {})},
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
    fleet: FleetConfig | None = None,
) -> ModelVersion:
    """Train on every outcome given (newest 15 % calibrate the intervals) and register a challenger.

    `readings` reported mid-gap add gap rows that start from them (`core.features.replay`).
    `fleet`, the simulated fleet the outcomes come from, is recorded: a retrain uses it as its prior.
    """
    if len(outcomes) < MIN_OUTCOMES:
        raise ValueError(f"{len(outcomes)} outcomes is too few to train on (need {MIN_OUTCOMES})")
    gaps, trips = segment_frames(outcomes, readings)
    result = gbm.train(model_version_new(source), gaps, trips, params=params, rounds=rounds, progress=progress)
    extra = {"simulated_fleet": fleet_to_json(fleet)} if fleet is not None else None
    row = _register(result, source=source, outcomes=outcomes, frames=(gaps, trips), extra_hyperparameters=extra)
    logger.info("trained %s on %s gaps and %s trips in %.1f s", row.version, len(gaps), len(trips), result.seconds)
    return row


def model_compile(row: ModelVersion, progress: Progress | None = None) -> float | None:
    """Compile `row`'s boosters for this machine (`core.compiled`); the seconds it took, None if it failed.

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

    Its boosters are compiled first (`MODEL_COMPILE`), so the web processes find them when they load it.
    `champion_promoted` is sent in the same transaction: its receivers forget the `model` candidate's shadow
    scores (predictions: the new champion is judged on its own pick-ups) and queue, after the commit, the
    re-pricing of every scheduled booking and its callbacks (callbacks).
    """
    if settings.MODEL_COMPILE:
        model_compile(ModelVersion.objects.get(version=version), progress)
    with transaction.atomic():
        row = ModelVersion.objects.select_for_update().get(version=version)
        ModelVersion.objects.filter(status=ModelStatus.CHAMPION).exclude(pk=row.pk).update(status=ModelStatus.RETIRED)
        row.status, row.promoted_at = ModelStatus.CHAMPION, timezone.now()
        row.save(update_fields=["status", "promoted_at"])
        champion_promoted.send(sender=ModelVersion, version=row.version)
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


def _decide(challenger: dict, champion: dict | None, *, bookings: int | None = None) -> tuple[bool, str]:
    """Promote only a challenger with honest intervals, on enough bookings, with an MAE lower by the margin.

    Intervals are honest when their 95 % coverage is within COVERAGE_RANGE, or no further from 95 %
    than the champion's (a challenger never makes the served intervals less honest than they are).
    Coverage measured on `bookings` held-out bookings is itself uncertain: on 150 bookings its standard
    error is about 1.8 points, so the range is widened by COVERAGE_NOISE_SE of them, and only a coverage
    clearly outside it refuses a challenger (the served intervals' margins are recalibrated online anyway).
    """
    low, high = COVERAGE_RANGE
    if bookings:
        slack = COVERAGE_NOISE_SE * (0.95 * 0.05 / bookings) ** 0.5
        low, high = round(low - slack, 3), round(high + slack, 3)
    cov = challenger["coverage_95"]
    if not low <= cov <= high:
        theirs = (champion or {}).get("coverage_95")
        if theirs is None or abs(cov - 0.95) > abs(theirs - 0.95):
            also = f", further from 0.95 than the champion's {theirs:.3f}" if theirs is not None else ""
            return False, f"challenger coverage {cov:.3f} outside {low}..{high}{also}"
    if bookings is not None and bookings < MIN_HOLDOUT_BOOKINGS:
        return False, f"only {bookings} held-out bookings to compare on (need {MIN_HOLDOUT_BOOKINGS})"
    if champion is None:
        return True, "no champion serves"
    bound = champion["mae"] * (1 - PROMOTION_MARGIN)
    if challenger["mae"] >= bound:
        return False, (
            f"challenger MAE {challenger['mae']:.3f} not below champion's {champion['mae']:.3f} "
            f"less {PROMOTION_MARGIN:.0%} ({bound:.3f})"
        )
    return True, f"challenger MAE {challenger['mae']:.3f} below champion's {champion['mae']:.3f}"


FROM_CHAMPION = "champion"  # `model_retrain(prior=...)`: the simulated fleet the champion's lineage learnt


def prior_fleet_for(row: ModelVersion | None) -> FleetConfig:
    """The simulated fleet a retrain takes as its prior: the one the champion (or its own prior) came from.

    A champion registered before fleets were recorded, or none, means the bootstrap fleet of `train_model`.
    """
    hyper = row.hyperparameters if row is not None else {}
    recorded = hyper.get("simulated_fleet") or (hyper.get("prior") or {}).get("fleet")
    return fleet_from_json(recorded) if recorded else BOOTSTRAP_FLEET


def _load(row: ModelVersion) -> gbm.GapTripModel | None:
    try:
        return gbm.GapTripModel.load(artifact_path(row), row.artifact_sha256)
    except (OSError, ValueError) as exc:
        logger.error("champion %s cannot be loaded for comparison: %s", row.version, exc)
        return None


def model_retrain(
    *,
    outcomes: list[Outcome],
    readings: Iterable[Reading] = (),
    holdout_share: float = HOLDOUT_SHARE,
    progress: Progress | None = None,
    rounds: int = gbm.DEFAULT_ROUNDS,
    prior: FleetConfig | str | None = FROM_CHAMPION,
    prior_strength: float = PRIOR_STRENGTH,
) -> RetrainReport:
    """Train a challenger on outcomes before the time cut (plus the prior), price both models' cascades over
    the bookings picked up after it, and promote the challenger if it is better.

    `prior` is the simulated fleet added to the training rows (FROM_CHAMPION: `prior_fleet_for` the
    champion; None, or `prior_strength` 0: no prior). A champion trained on this fleet's outcomes
    (source `outcomes`) that reach into the holdout is judged on the bookings after its window when there
    are enough of them; a model of a simulated fleet never saw this one, and its dates protect nothing.
    """
    if len(outcomes) < MIN_OUTCOMES:
        raise ValueError(f"{len(outcomes)} outcomes recorded; retraining needs at least {MIN_OUTCOMES}")
    gaps, trips = segment_frames(outcomes, readings)
    # Quantile of the timestamps themselves: their integer view is in the column's unit (µs here), not ns.
    cut_at = trips["at"].quantile(1 - holdout_share)
    # Train only on segments whose outcome was known before the cut (a trip that straddles it is in neither).
    fit_gaps, fit_trips = gaps[gaps["end"] < cut_at], trips[trips["end"] < cut_at]
    champion_row = ModelVersion.objects.filter(status=ModelStatus.CHAMPION).first()
    known = sum(1 for o in outcomes if o.end < cut_at)
    fleet = prior_fleet_for(champion_row) if prior == FROM_CHAMPION else prior
    extra: dict = {}
    prior_frames = None
    if isinstance(fleet, FleetConfig) and prior_strength > 0:
        rows = prior_rows(fleet, cache_dir=settings.MODEL_DIR)
        weight = prior_weight(fleet_outcomes=known, prior_outcomes=rows.outcomes, strength=prior_strength)
        extra["prior"] = {"fleet": fleet_to_json(fleet), **weight}
        prior_frames = (rows.gaps, rows.trips)
    else:
        extra["prior"] = None
    result = gbm.train(
        model_version_new("outcomes"),
        fit_gaps,
        fit_trips,
        rounds=rounds,
        progress=progress,
        prior=prior_frames,
        prior_weight=extra["prior"]["row_weight"] if extra["prior"] else 0.0,
    )
    segments = evaluate(result.model, gaps[gaps["at"] >= cut_at], trips[trips["at"] >= cut_at])
    cascades = holdout_cascades(outcomes, cut_at)
    mine = cascade_price(result.model, cascades)
    champion = _load(champion_row) if champion_row is not None else None
    theirs = cascade_price(champion, cascades) if champion is not None else None
    scope = f"every booking picked up from {cut_at:%Y-%m-%d %H:%M}"
    caveat = ""
    window_end = champion_row.window_end if champion_row is not None else None
    if theirs is not None and champion_row.source == "outcomes" and window_end and window_end >= cut_at:
        after = [p for p in mine if p.made_at > window_end]
        if len({(p.car_id, p.pickup) for p in after}) >= MIN_HOLDOUT_BOOKINGS:
            # Judged only where neither model saw an outcome: after the champion's window.
            mine, theirs = after, [p for p in theirs if p.made_at > window_end]
            scope = f"the bookings priced after the champion's window ({window_end:%Y-%m-%d %H:%M})"
        else:
            caveat = (
                f"; the champion trained on this fleet's outcomes up to {window_end:%Y-%m-%d}, inside the "
                "holdout (its figures flatter it)"
            )
    challenger_metrics = cascade_metrics(mine) | {"segments": segments}
    champion_metrics = cascade_metrics(theirs) | {"version": champion_row.version} if theirs is not None else None
    for figures in (challenger_metrics, champion_metrics):
        if figures is not None:
            figures["rows"] = figures["predictions"]
    result.metrics = {**challenger_metrics, "calibration": result.metrics}
    row = _register(
        result,
        source="outcomes",
        outcomes=[o for o in outcomes if o.start < cut_at],
        frames=(fit_gaps, fit_trips),
        champion_metrics=champion_metrics,
        extra_hyperparameters=extra,
    )
    promote, reason = (
        _decide(challenger_metrics, champion_metrics, bookings=challenger_metrics["bookings"])
        if challenger_metrics["bookings"]
        else (False, "no held-out booking to compare on")
    )
    compared = (
        f"; compared on {challenger_metrics['bookings']} held-out bookings ({challenger_metrics['predictions']} "
        f"predictions, each priced through the cascade at the return of the 1 to {DEPTH} bookings before it), "
        f"{scope}"
    )
    weight = extra["prior"]
    prior_note = (
        f"; prior: simulated fleet seed {weight['fleet']['seed']} ({weight['prior_outcomes']} outcomes) weighing "
        f"{weight['total_weight']:.0f} outcomes against the fleet's {known} ({weight['share']:.1%} of the weight)"
        if weight
        else "; no prior"
    )
    reason = reason + caveat + compared + prior_note
    row.notes = reason
    row.save(update_fields=["notes"])
    if promote:
        model_promote(version=row.version)
        row.refresh_from_db()
    logger.info("retrain: %s (%s)", "promoted" if promote else "kept the champion", reason)
    return RetrainReport(row, champion_row, challenger_metrics, champion_metrics or {}, promote, reason)
