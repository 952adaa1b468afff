"""The model registry side by side: how each model scored on its holdout, which one serves, and drift.

Three queries: the champion, the newest models, and the latest drift check of each.
"""

from __future__ import annotations

from dataclasses import dataclass

from learning.models import DriftCheck, ModelStatus, ModelVersion
from learning.selectors import drift_latest_by_version, model_champion
from predictions.shadow import CANDIDATES, shadow_report

MODELS_PAGE_LIMIT = 30
# The holdout figures shown as columns, in order: (key in holdout_metrics, column title).
HOLDOUT_COLUMNS = (
    ("rows", "holdout rows"),
    ("mae", "MAE"),
    ("bias", "bias"),
    ("within_10", "within 10"),
    ("coverage_95", "95 % coverage"),
)


@dataclass(frozen=True)
class FeatureDrift:
    kind: str
    name: str
    psi: float | None
    status: str
    scored: bool


@dataclass(frozen=True)
class ModelRow:
    model: ModelVersion
    holdout: list[float | int | None]
    segment_mae: dict[str, float | None]
    serving: bool
    drift: DriftCheck | None = None

    @property
    def drift_features(self) -> list[FeatureDrift]:
        """The latest check's features, most drifted first (features it could not score last)."""
        if self.drift is None:
            return []
        rows = [
            FeatureDrift(
                kind=kind,
                name=name,
                psi=figures.get("psi"),
                status=figures.get("status", ""),
                scored=bool(figures.get("scored", True)),
            )
            for kind, features in (self.drift.features or {}).items()
            for name, figures in features.items()
        ]
        return sorted(rows, key=lambda f: (f.psi is None, -(f.psi or 0.0), f.kind, f.name))


@dataclass
class ModelsOverview:
    rows: list[ModelRow]
    champion: ModelVersion | None
    champion_serving: bool
    total: int


def _segment_mae(metrics: dict, kind: str) -> float | None:
    figures = metrics.get(kind)
    return figures.get("mae") if isinstance(figures, dict) else None


def models_overview(*, limit: int = MODELS_PAGE_LIMIT) -> ModelsOverview:
    """The newest registered models with their holdout figures as columns (newest first)."""
    champion, serving = model_champion()
    models = list(ModelVersion.objects.order_by("-trained_at", "-id")[:limit])
    drift = drift_latest_by_version()
    rows = [
        ModelRow(
            model=m,
            holdout=[m.holdout_metrics.get(key) for key, _ in HOLDOUT_COLUMNS],
            segment_mae={kind: _segment_mae(m.holdout_metrics, kind) for kind in ("gap", "trip")},
            serving=serving and m.status == ModelStatus.CHAMPION,
            drift=drift.get(m.version),
        )
        for m in models
    ]
    return ModelsOverview(rows=rows, champion=champion, champion_serving=serving, total=ModelVersion.objects.count())


@dataclass(frozen=True)
class ShadowRow:
    kind: str
    serving: str
    cells: list[dict | None]  # one per candidate, in `CANDIDATES` order: {"mae", "bookings"} or None


def shadow_rows() -> list[ShadowRow]:
    """Every kind's shadow scores as table rows, one cell per candidate (`predictions.shadow`)."""
    _, serving = model_champion()
    return [
        ShadowRow(kind=row["kind"], serving=row["serving"], cells=[row["candidates"].get(c) for c in CANDIDATES])
        for row in shadow_report(model_available=serving)
    ]
