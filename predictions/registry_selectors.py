"""Reads of the model registry: the list behind `GET /api/v1/models` and the champion in `model/info`."""

from __future__ import annotations

from django.db.models import F, Window
from django.db.models.functions import RowNumber

from common.api.fields import iso
from predictions.champion import champion_model
from predictions.drift_models import DriftCheck
from predictions.registry_models import ModelStatus, ModelVersion

MODELS_LIMIT_DEFAULT = 50
MODELS_LIMIT_MAX = 500


def model_version_body(row: ModelVersion) -> dict:
    """One registry row as the API shows it: what the model learned from, how it scored, how it was built.

    The artifact's path stays internal (it is a file on the worker's disk); its checksum is shown so
    staff can tell two deployments serve the same trees.
    """
    return {
        "version": row.version,
        "kind": row.kind,
        "status": row.status,
        "source": row.source,
        "trained_at": iso(row.trained_at),
        "promoted_at": iso(row.promoted_at),
        "window_start": iso(row.window_start),
        "window_end": iso(row.window_end),
        "training_rows": row.training_rows,
        "features": row.features,
        "hyperparameters": row.hyperparameters,
        "holdout_metrics": row.holdout_metrics,
        "champion_metrics": row.champion_metrics,
        "calibration": row.calibration,
        "training_seconds": row.training_seconds,
        "artifact_sha256": row.artifact_sha256,
        "notes": row.notes,
    }


def model_versions_list(*, limit: int = MODELS_LIMIT_DEFAULT) -> dict:
    """The newest `limit` registered models (two queries: the count and the page).

    A registry grows by one row a week, so a bounded list is enough; `total` says how many exist.
    """
    limit = max(1, min(limit, MODELS_LIMIT_MAX))
    rows = list(ModelVersion.objects.order_by("-trained_at", "-id")[:limit])
    return {
        "models": [model_version_body(row) for row in rows],
        "total": ModelVersion.objects.count(),
        "count": len(rows),
    }


def model_champion() -> tuple[ModelVersion | None, bool]:
    """The registry's champion (None when none is registered) and whether its model actually serves.

    A champion whose artifact is missing or fails its checksum is registered but not serving: the
    pattern cascade answers instead (see `predictions.champion`).
    """
    row = ModelVersion.objects.filter(status=ModelStatus.CHAMPION).first()
    model = champion_model() if row is not None else None
    return row, model is not None and model.version == row.version


def drift_latest_by_version() -> dict[str, DriftCheck]:
    """The latest drift check of every model version that has one, by version (one query).

    Each check's `model_version` is loaded with it; its `feature_reference` holds the bins that the
    check's recent `shares` are set against.
    """
    latest = (
        DriftCheck.objects.annotate(
            newest=Window(
                RowNumber(), partition_by=[F("model_version_id")], order_by=[F("checked_at").desc(), F("id").desc()]
            )
        )
        .filter(newest=1)
        .select_related("model_version")
    )
    return {check.model_version.version: check for check in latest}
