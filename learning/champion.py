"""The serving model: the registry's champion, loaded once per process and re-checked every few seconds.

A promotion (by `retrain` in the worker) reaches every web process within
MODEL_REFRESH_SECONDS without a restart. A champion whose artifact is missing or corrupt is
logged and not served: the pattern cascade answers, and says so in `prediction_method`.

A promotion is announced with `learning.signals.champion_promoted`, so the layers above hear of it without
learning calling up into them: predictions forgets the `model` candidate's shadow scores, and callbacks queues
the re-pricing of every scheduled booking (with its callbacks to Laravel).
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from django.conf import settings

from core.compiled import attach_compiled, compiled_dir
from core.gbm import ArtifactMismatch, GapTripModel
from learning.models import ModelStatus, ModelVersion

logger = logging.getLogger(__name__)

_lock = threading.Lock()
_state: dict = {"checked": -1e18, "version": None, "model": None}


def champion_row() -> ModelVersion | None:
    return ModelVersion.objects.filter(status=ModelStatus.CHAMPION).first()


def artifact_path(row: ModelVersion) -> Path:
    path = Path(row.artifact_path)
    return path if path.is_absolute() else Path(settings.MODEL_DIR) / path


def champion_model() -> GapTripModel | None:
    """The loaded champion, or None when no model is registered or it cannot be loaded."""
    now = time.monotonic()
    if now - _state["checked"] < settings.MODEL_REFRESH_SECONDS:
        return _state["model"]
    with _lock:
        row = (
            ModelVersion.objects.filter(status=ModelStatus.CHAMPION)
            .only("version", "artifact_path", "artifact_sha256")
            .first()
        )
        if row is None:
            _state.update(version=None, model=None)
        elif row.version != _state["version"]:
            try:
                model = GapTripModel.load(artifact_path(row), row.artifact_sha256)
            except (OSError, ValueError) as exc:
                logger.error("champion %s cannot be loaded, serving the pattern cascade: %s", row.version, exc)
                model = None
            _state.update(version=row.version, model=model)
            if model is not None and not _attach(model, row):
                logger.warning(
                    "serving model %s with LightGBM's predictor: its boosters are not compiled for this machine "
                    "(python manage.py compile_model)",
                    row.version,
                )
        elif _state["model"] is not None and _state["model"].gap.compiled is None:
            _attach(_state["model"], row)  # compiled since it was loaded (`compile_model`): picked up without a restart
        _state["checked"] = now
    return _state["model"]


def _attach(model: GapTripModel, row: ModelVersion) -> bool:
    attached = attach_compiled(model, row.artifact_sha256, compiled_dir(settings.MODEL_DIR))
    if attached:
        logger.info("serving model %s (compiled boosters)", row.version)
    return attached


def champion_incompatible(row: ModelVersion) -> bool:
    """Whether `row`'s artifact is readable but was trained for other features or quantiles than this code's.

    A missing or unreadable artifact is not "incompatible": it may be a model directory that is
    not mounted yet, and replacing a champion trained on real outcomes for that would lose it.
    """
    try:
        GapTripModel.load(artifact_path(row), row.artifact_sha256)
    except ArtifactMismatch:
        return True
    except (OSError, ValueError):
        return False
    return False


def champion_forget() -> None:
    """Drop the cached champion (after a promotion in this process, and between tests)."""
    with _lock:
        _state.update(checked=-1e18, version=None, model=None)
