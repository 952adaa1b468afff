"""Drift of the model's inputs: the champion's recent gap and trip features against its training window.

At training time `feature_reference` stores, for every model input, decile bin edges and the share of
rows in each bin (plus the share missing). Each week `model_drift_check` replays the recorded outcomes,
bins the segments whose outcome became known in the last `DRIFT_WINDOW_DAYS` with the champion's edges,
and scores each feature's population stability index, PSI = sum((recent - reference) * ln(recent /
reference)) over the bins. By the usual convention a PSI under 0.1 is stable, 0.1 to 0.25 has moved,
and over 0.25 has drifted: the model is pricing segments unlike the ones it learned from.

Three choices keep the figure about the world rather than about the calendar:

- The reference is the training window's newest `DRIFT_REFERENCE_DAYS`, not all of it. A car's and a
  renter's learned features (EMA rates, shares, counts) start empty and fill as history accumulates, so
  the start of any training window looks younger than every week after it; its last weeks are as mature
  as the week checked, and the nearest to it in season.
- Values are compared at two decimals (36 s, 0.01 point, 0.01 %/h, one percentage point of a share).
  Finer differences carry nothing, and a share that decays towards 0 after a rare event (a top-up ten
  trips ago) would otherwise get bins of its own that track only how long the history is.
- `UNSCORED` features are shown but do not set the status: the month and the per-car and per-renter
  counts advance with the calendar and with each history, so a week after the training window always
  lies at or past its end. New cars and renters still show, as missing learned rates.

Pure functions plus one service; the thresholds and windows are settings (defaults below).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
from django.conf import settings
from django.utils import timezone

from core.features import FEATURES, replay
from learning.champion import champion_row
from learning.models import DriftCheck, DriftStatus, ModelVersion
from learning.selectors import outcomes_all, readings_mid_gap

logger = logging.getLogger(__name__)

DECILES = np.linspace(0.1, 0.9, 9)
DECIMALS = 2  # the resolution values are compared at
EPSILON = 1e-4  # an empty bin's share in the PSI (ln(0) is undefined)
REFERENCE_FORMAT = 1
UNSCORED = frozenset({"month", "car_gaps", "car_trips", "renter_trips"})


def drift_settings() -> dict:
    """The windows and thresholds in force. Their defaults live once, in batterypred/settings.py (the
    `DRIFT_*` settings read from the environment): with fewer than `DRIFT_MIN_ROWS` gaps or trips per kind,
    PSI over ten bins is mostly sampling noise."""
    return {
        "window_days": settings.DRIFT_WINDOW_DAYS,
        "reference_days": settings.DRIFT_REFERENCE_DAYS,
        "min_rows": settings.DRIFT_MIN_ROWS,
        "psi_warn": settings.DRIFT_PSI_WARN,
        "psi_drift": settings.DRIFT_PSI_DRIFT,
    }


# --- the numbers ------------------------------------------------------------------------------------------


def _values(values: Sequence[float] | pd.Series | np.ndarray) -> np.ndarray:
    return np.round(np.asarray(values, dtype=np.float64), DECIMALS)


def bin_edges(values: Sequence[float] | pd.Series | np.ndarray) -> list[float]:
    """Decile edges of the present values, taken from the values themselves and merged where equal.

    Bins are closed on the right (`edge[i-1] < x <= edge[i]`), so a value many rows share (0 for
    "not charging", 30 for a capped count) gets a bin of its own; the last bin is open-ended.
    """
    present = _values(values)
    present = present[~np.isnan(present)]
    if present.size == 0:
        return []
    return [round(float(e), DECIMALS) for e in np.unique(np.quantile(present, DECILES, method="lower"))]


def bin_shares(values: Sequence[float] | pd.Series | np.ndarray, edges: Sequence[float]) -> tuple[list[float], float]:
    """The share of `values` in each of the `len(edges) + 1` bins, and the share missing (NaN); all sum to 1."""
    array = _values(values)
    if array.size == 0:
        return [0.0] * (len(edges) + 1), 0.0
    missing = np.isnan(array)
    counts = np.bincount(
        np.searchsorted(np.asarray(edges, dtype=np.float64), array[~missing], side="left"), minlength=len(edges) + 1
    )
    return [round(float(c) / array.size, 6) for c in counts], round(float(missing.sum()) / array.size, 6)


def psi(reference: Sequence[float], recent: Sequence[float], *, epsilon: float = EPSILON) -> float:
    """Population stability index of two distributions over the same bins (shares; empty bins count as epsilon)."""
    expected = np.maximum(np.asarray(reference, dtype=np.float64), epsilon)
    actual = np.maximum(np.asarray(recent, dtype=np.float64), epsilon)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def psi_status(value: float, *, warn: float, drift: float) -> str:
    """ok, warn or drift by the PSI thresholds (as the plain strings stored in JSON)."""
    if value >= drift:
        return DriftStatus.DRIFT.value
    return DriftStatus.WARN.value if value >= warn else DriftStatus.OK.value


def feature_reference(gaps: pd.DataFrame, trips: pd.DataFrame, *, days: int | None = None) -> dict:
    """What the weekly drift check compares against: bins and shares of every input over the newest `days`.

    `gaps` and `trips` are the training frames (features plus `end`, when each outcome became known).
    Stored on the `ModelVersion` (`feature_reference`); empty when there are no rows.
    """
    days = days or drift_settings()["reference_days"]
    ends = pd.concat([gaps["end"], trips["end"]], ignore_index=True)
    if ends.empty:
        return {}
    end, first = ends.max().to_pydatetime(), ends.min().to_pydatetime()
    start = end - timedelta(days=days)
    reference: dict = {
        "format": REFERENCE_FORMAT,
        "bins": "deciles",
        "decimals": DECIMALS,
        "days": days,
        "window_start": max(start, first).isoformat(),
        "window_end": end.isoformat(),
    }
    for kind, frame in (("gap", gaps), ("trip", trips)):
        newest = frame[frame["end"] >= start]
        columns = {}
        for name in FEATURES[kind]:
            edges = bin_edges(newest[name])
            shares, missing = bin_shares(newest[name], edges)
            columns[name] = {"edges": edges, "shares": shares, "missing": missing}
        reference[kind] = {"rows": len(newest), "features": columns}
    return reference


# --- the weekly check -------------------------------------------------------------------------------------


def drift_unavailable_reason(champion: ModelVersion | None) -> str | None:
    """Why `champion` cannot be checked (None: it can)."""
    if champion is None:
        return "no champion model is registered"
    if not all(champion.feature_reference.get(kind) for kind in FEATURES):
        return f"the champion {champion.version} has no feature reference (trained before drift checks: retrain it)"
    return None


def _recent_rows(*, start: datetime, end: datetime) -> tuple[dict[str, list[dict]], int]:
    """Gap and trip rows whose outcome became known in (start, end], replayed point in time, and the outcome count.

    A car's and a renter's features need their history before the window, so the replay runs over
    every outcome up to `end` (as the weekly retrain does, on the same training cluster).
    """
    outcomes = [o for o in outcomes_all() if o.end <= end]
    gaps, trips, _ = replay(outcomes, readings_mid_gap(until=end))
    rows = {
        "gap": [row for row in gaps if start < row["end"] <= end],
        "trip": [row for row in trips if start < row["end"] <= end],
    }
    return rows, sum(1 for o in outcomes if o.end > start)


def _compare(reference: dict, values: list[float], *, scored: bool, limits: dict) -> dict:
    shares, missing = bin_shares(values, reference["edges"])
    value = round(psi([*reference["shares"], reference["missing"]], [*shares, missing]), 4)
    status = psi_status(value, warn=limits["psi_warn"], drift=limits["psi_drift"])
    return {"psi": value, "status": status, "scored": scored, "shares": shares, "missing": missing}


def model_drift_check(*, now: datetime | None = None) -> DriftCheck | None:
    """Score the champion's inputs over the window ending at `now` against its reference; store and return the check.

    Returns None (and logs why) when no champion is registered or it has no reference. With fewer than
    `DRIFT_MIN_ROWS` gaps or trips in the window the check is stored as insufficient data, unscored.
    Replays every recorded outcome: run it on the training cluster, never in a web request.
    """
    champion = champion_row()
    reason = drift_unavailable_reason(champion)
    if reason is not None:
        logger.info("drift check skipped: %s", reason)
        return None
    limits = drift_settings()
    end = now or timezone.now()
    start = end - timedelta(days=limits["window_days"])
    rows, outcomes = _recent_rows(start=start, end=end)
    counts = {kind: len(kind_rows) for kind, kind_rows in rows.items()}
    features: dict = {}
    worst: tuple[float, str] | None = None
    if min(counts.values()) < limits["min_rows"]:
        status = DriftStatus.INSUFFICIENT_DATA
    else:
        for kind, names in FEATURES.items():
            reference = champion.feature_reference[kind]["features"]
            features[kind] = {}
            for name in names:
                if name not in reference:
                    continue  # a feature the champion was not trained with
                result = _compare(
                    reference[name], [row[name] for row in rows[kind]], scored=name not in UNSCORED, limits=limits
                )
                features[kind][name] = result
                if result["scored"] and (worst is None or result["psi"] > worst[0]):
                    worst = (result["psi"], f"{kind}.{name}")
        status = (
            DriftStatus.OK
            if worst is None
            else psi_status(worst[0], warn=limits["psi_warn"], drift=limits["psi_drift"])
        )
    check = DriftCheck.objects.create(
        model_version=champion,
        window_start=start,
        window_end=end,
        status=status,
        outcomes=outcomes,
        rows=counts,
        max_psi=None if worst is None else worst[0],
        worst_feature="" if worst is None else worst[1],
        features=features,
        thresholds={
            "psi_warn": limits["psi_warn"],
            "psi_drift": limits["psi_drift"],
            "min_rows": limits["min_rows"],
            "unscored": sorted(UNSCORED),
        },
    )
    logger.info(
        "drift check of %s: %s (%s outcomes, %s gaps, %s trips; worst %s)",
        champion.version,
        status,
        outcomes,
        counts["gap"],
        counts["trip"],
        check.worst_feature or "-",
    )
    return check


def drift_table(check: DriftCheck) -> list[dict]:
    """Every feature of a check as one row (kind, feature, psi, status, scored): the scored ones first, each
    group by PSI, largest first (an unscored feature's PSI says how far the calendar moved, not the world)."""
    rows = [
        {"kind": kind, "feature": name, **{k: figures[k] for k in ("psi", "status", "scored")}}
        for kind, columns in check.features.items()
        for name, figures in columns.items()
    ]
    return sorted(rows, key=lambda r: (not r["scored"], -r["psi"], r["kind"], r["feature"]))
