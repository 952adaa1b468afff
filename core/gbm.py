"""The gap and trip models: LightGBM quantile regressors of how much a parked gap or a trip changes the level.

Each segment kind has one booster per quantile in `QUANTILES`, so a segment's prediction is a
whole distribution (it can be two-humped: a car that may or may not be charged by staff).
`core.ml_cascade` draws from these distributions and composes them through a car's
schedule. Intervals are calibrated on held-out outcomes: `calibration[kind]` scales each
quantile's distance from the median so the 95 % interval covers 95 % of the holdout.

The boosters learn the **residual of the car's own physics**: each row carries `physics`, the change
its learned rates give (`core.features.gap_physics`, `trip_physics`), the boosters fit the actual
change minus it, and `SegmentModels.quantiles` adds it back. Trees do not extrapolate: a car charging
four times slower than any the model trained on, or stopping at an 80 % limit, still gets its own
rate and its own ceiling from the physics, and the trees only move it by what they learned the
physics misses. Without it the trees answer with the nearest training car's change.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import lightgbm as lgb
import numpy as np
import pandas as pd

from core.features import FEATURES, PHYSICS

if TYPE_CHECKING:
    from core.compiled import CompiledBoosters

QUANTILES = (0.025, 0.1, 0.25, 0.5, 0.75, 0.9, 0.975)
MEDIAN = QUANTILES.index(0.5)
# What the boosters predict; an artifact that learned anything else (the change itself, before the physics
# residual) is refused, not served with the physics added twice.
TARGET = "change_minus_physics"
DEFAULT_PARAMS = {
    "learning_rate": 0.08,
    "num_leaves": 31,
    "min_data_in_leaf": 40,
    "feature_fraction": 0.9,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "lambda_l2": 1.0,
    "verbose": -1,
    "seed": 17,
}
DEFAULT_ROUNDS = 200
WEIGHT = "weight"  # optional column of a training frame: the row's sample weight (1 when absent)
TRAIN_THREADS = max(1, min(4, os.cpu_count() or 1))


class ArtifactMismatch(ValueError):
    """A readable artifact trained for other features, quantiles or target than this code serves (an older
    release's)."""


def _physics_column(kind: str) -> int:
    return FEATURES[kind].index(PHYSICS)


@dataclass
class SegmentModels:
    """Quantile boosters of one segment kind, predicted in one pass per booster for a whole batch."""

    kind: str
    boosters: list[lgb.Booster]
    scale: float = 1.0  # calibration of the distance from the median
    # The same boosters compiled to machine code (`core.compiled`), when they are: same numbers, faster.
    compiled: CompiledBoosters | None = field(default=None, repr=False)

    def quantiles(self, rows: np.ndarray) -> np.ndarray:
        """(n, len(QUANTILES)) changes in points, sorted per row (no crossing), calibrated.

        The boosters' residuals plus each row's physics change (its `physics` column)."""
        if len(rows) == 0:
            return np.zeros((0, len(QUANTILES)))
        if self.compiled:
            raw = self.compiled.predict(rows)  # a fresh array, sorted in place below
        else:
            raw = np.column_stack([b.predict(rows, num_threads=1) for b in self.boosters])
        raw.sort(axis=1)
        median = raw[:, [MEDIAN]]
        return rows[:, [_physics_column(self.kind)]] + median + self.scale * (raw - median)


@dataclass
class GapTripModel:
    version: str
    gap: SegmentModels
    trip: SegmentModels
    params: dict = field(default_factory=dict)
    rounds: int = DEFAULT_ROUNDS

    def segment(self, kind: str) -> SegmentModels:
        return self.gap if kind == "gap" else self.trip

    def to_json(self) -> str:
        return json.dumps(
            {
                "version": self.version,
                "quantiles": list(QUANTILES),
                "features": FEATURES,
                "target": TARGET,
                "params": self.params,
                "rounds": self.rounds,
                "calibration": {"gap": self.gap.scale, "trip": self.trip.scale},
                "boosters": {
                    kind: [b.model_to_string() for b in self.segment(kind).boosters] for kind in ("gap", "trip")
                },
            }
        )

    @classmethod
    def from_json(cls, text: str) -> GapTripModel:
        data = json.loads(text)
        if tuple(data["quantiles"]) != QUANTILES or data["features"] != FEATURES or data.get("target") != TARGET:
            raise ArtifactMismatch(
                "artifact was trained with other quantiles, features or target than this code serves"
            )
        segments = {
            kind: SegmentModels(
                kind,
                [lgb.Booster(model_str=s) for s in data["boosters"][kind]],
                scale=float(data["calibration"][kind]),
            )
            for kind in ("gap", "trip")
        }
        return cls(data["version"], segments["gap"], segments["trip"], data["params"], data["rounds"])

    def save(self, directory: Path) -> tuple[Path, str]:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{self.version}.json"
        text = self.to_json()
        path.write_text(text)
        return path, hashlib.sha256(text.encode()).hexdigest()

    @classmethod
    def load(cls, path: Path, sha256: str | None = None) -> GapTripModel:
        text = Path(path).read_text()
        if sha256 and hashlib.sha256(text.encode()).hexdigest() != sha256:
            raise ValueError(f"model artifact {path} does not match its registry checksum")
        return cls.from_json(text)


def matrix(rows: list[dict] | pd.DataFrame, kind: str) -> np.ndarray:
    """The feature matrix in the model's column order (plain lists at serving: no pandas overhead)."""
    names = FEATURES[kind]
    if isinstance(rows, pd.DataFrame):
        return rows[names].to_numpy(dtype=np.float64)
    return np.array([[row[name] for name in names] for row in rows], dtype=np.float64).reshape(len(rows), len(names))


def fit_segment(
    kind: str,
    frame: pd.DataFrame,
    *,
    params: dict | None = None,
    rounds: int = DEFAULT_ROUNDS,
    progress: Callable[[str], None] | None = None,
) -> SegmentModels:
    """One quantile booster per quantile on `frame` (features + `target`, the actual change, and a `weight` per
    row if it has one), fitted to the residual `target - physics`.

    Boosters train in parallel threads, one OpenMP thread each: LightGBM releases the GIL, and
    a single booster on several threads slows down badly when the machine is busy.
    """
    x = matrix(frame, kind)
    y = frame["target"].to_numpy(dtype=np.float64) - frame[PHYSICS].to_numpy(dtype=np.float64)
    weight = frame[WEIGHT].to_numpy(dtype=np.float64) if WEIGHT in frame else None
    dataset = lgb.Dataset(
        x, y, weight=weight, feature_name=FEATURES[kind], free_raw_data=False, params={"max_bin": 127}
    )
    dataset.construct()
    settings = {**DEFAULT_PARAMS, **(params or {}), "objective": "quantile", "num_threads": 1}

    def fit(q: float) -> lgb.Booster:
        booster = lgb.train({**settings, "alpha": q}, dataset, rounds)
        if progress:
            progress(f"{kind} q{q}")
        return booster

    with ThreadPoolExecutor(max_workers=TRAIN_THREADS) as pool:
        boosters = list(pool.map(fit, QUANTILES))
    return SegmentModels(kind, boosters)


def calibrate(models: SegmentModels, frame: pd.DataFrame) -> float:
    """The scale that makes the 95 % interval cover 95 % of `frame` (held out), within 0.5..3."""
    if len(frame) < 50:
        return 1.0
    x, y = matrix(frame, models.kind), frame["target"].to_numpy()
    raw = SegmentModels(models.kind, models.boosters, 1.0).quantiles(x)
    median, low, high = raw[:, MEDIAN], raw[:, 0], raw[:, -1]
    below = np.where(y < median, (median - y) / np.maximum(median - low, 1e-6), 0.0)
    above = np.where(y >= median, (y - median) / np.maximum(high - median, 1e-6), 0.0)
    needed = np.maximum(below, above)
    return float(np.clip(np.quantile(needed, 0.95), 0.5, 3.0))


def segment_metrics(models: SegmentModels, frame: pd.DataFrame) -> dict[str, float]:
    if frame.empty:
        return {}
    q = models.quantiles(matrix(frame, models.kind))
    y = frame["target"].to_numpy()
    err = q[:, MEDIAN] - y
    return {
        "rows": len(y),
        "mae": round(float(np.mean(np.abs(err))), 3),
        "coverage_95": round(float(np.mean((y >= q[:, 0]) & (y <= q[:, -1]))), 4),
        "width_95": round(float(np.mean(q[:, -1] - q[:, 0])), 3),
    }


@dataclass
class TrainingResult:
    model: GapTripModel
    metrics: dict
    rows: dict
    seconds: float


def train(
    version: str,
    gaps: pd.DataFrame,
    trips: pd.DataFrame,
    *,
    calibration_share: float = 0.15,
    params: dict | None = None,
    rounds: int = DEFAULT_ROUNDS,
    progress: Callable[[str], None] | None = None,
    prior: tuple[pd.DataFrame, pd.DataFrame] | None = None,
    prior_weight: float = 1.0,
) -> TrainingResult:
    """Fit both segment kinds on the older rows, calibrate intervals on the newest `calibration_share`.

    `prior` (gap and trip rows of another fleet, e.g. simulated) joins the fitting rows only, each row
    weighing `prior_weight` against 1 for the fleet's own: the intervals are calibrated on the fleet's rows.
    """
    started = time.perf_counter()
    segments, metrics, rows = {}, {}, {}
    for kind, frame in (("gap", gaps), ("trip", trips)):
        frame = frame.sort_values("at", kind="stable")
        cut = int(len(frame) * (1 - calibration_share))
        fit, held = frame.iloc[:cut], frame.iloc[cut:]
        extra = prior[0 if kind == "gap" else 1] if prior is not None else None
        if extra is not None and not extra.empty and prior_weight > 0:
            fit = pd.concat([fit.assign(**{WEIGHT: 1.0}), extra.assign(**{WEIGHT: prior_weight})], ignore_index=True)
        models = fit_segment(kind, fit, params=params, rounds=rounds, progress=progress)
        models.scale = calibrate(models, held)
        segments[kind] = models
        metrics[kind] = segment_metrics(models, held)
        rows[kind] = len(frame)
    model = GapTripModel(version, segments["gap"], segments["trip"], {**DEFAULT_PARAMS, **(params or {})}, rounds)
    return TrainingResult(model, metrics, rows, time.perf_counter() - started)
