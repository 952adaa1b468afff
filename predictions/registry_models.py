"""The model registry: every trained model is a row; exactly one champion serves predictions."""

from django.db import models
from django.db.models import Q


class ModelStatus(models.TextChoices):
    CHAMPION = "champion", "champion (serving)"
    CHALLENGER = "challenger", "challenger (evaluated, not promoted)"
    RETIRED = "retired", "retired (was champion)"


class ModelVersion(models.Model):
    """A trained gap-and-trip model: what it learned from, how it scored, and where its trees are.

    The artifact (LightGBM boosters as text) lives in `MODEL_DIR`; `artifact_sha256` guards
    against serving a file that does not match the row.
    """

    version = models.CharField(max_length=64, unique=True)
    kind = models.CharField(max_length=32, default="gap-trip-lgbm")
    status = models.CharField(max_length=16, choices=ModelStatus.choices, default=ModelStatus.CHALLENGER)
    source = models.CharField(max_length=64, help_text="synthetic:<seed> or outcomes")
    trained_at = models.DateTimeField(auto_now_add=True)
    promoted_at = models.DateTimeField(null=True, blank=True)
    window_start = models.DateTimeField(null=True, blank=True)
    window_end = models.DateTimeField(null=True, blank=True)
    training_rows = models.JSONField(default=dict, help_text="rows per segment model (gap, trip)")
    features = models.JSONField(default=dict)
    hyperparameters = models.JSONField(default=dict)
    holdout_metrics = models.JSONField(default=dict)
    champion_metrics = models.JSONField(default=dict, help_text="the champion's figures on the same holdout")
    calibration = models.JSONField(default=dict, help_text="interval scale fitted on held-out outcomes")
    feature_reference = models.JSONField(
        default=dict,
        blank=True,
        help_text="per kind and feature: decile bin edges and shares of the training window's newest weeks "
        "(what the weekly drift check compares against; empty for models trained before it existed)",
    )
    training_seconds = models.FloatField(default=0.0)
    artifact_path = models.CharField(max_length=500)
    artifact_sha256 = models.CharField(max_length=64)
    notes = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["-trained_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["status"], condition=Q(status="champion"), name="one_champion_model")
        ]

    def __str__(self) -> str:
        return f"{self.version} ({self.status})"
