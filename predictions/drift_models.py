"""The weekly drift check: how far the champion's recent inputs moved from those of its training window.

Rows are written by `learning.drift.model_drift_check` only; the models page and the admin read them.
"""

from django.db import models
from django.db.models import F, Q
from django.utils import timezone


class DriftStatus(models.TextChoices):
    OK = "ok", "ok (stable)"
    WARN = "warn", "warn (moved: watch it)"
    DRIFT = "drift", "drift (the model is seeing inputs unlike its training)"
    INSUFFICIENT_DATA = "insufficient_data", "insufficient data (too few recent segments to judge)"


class DriftCheck(models.Model):
    """One check of a model's inputs: the population stability index (PSI) of every gap and trip feature.

    `features[kind][name]` holds the feature's `psi`, its `status`, whether it is `scored` (counts in the
    overall status; see `learning.drift.UNSCORED`), and the recent `shares` per bin and `missing` share, to
    set beside the reference's on `model_version.feature_reference`. `thresholds` records the rule the
    status was judged by, so changing the settings later does not reinterpret old checks.
    """

    model_version = models.ForeignKey("predictions.ModelVersion", on_delete=models.CASCADE, related_name="drift_checks")
    checked_at = models.DateTimeField(default=timezone.now, help_text="when the check ran")
    window_start = models.DateTimeField(help_text="recent segments compared: outcome known after this")
    window_end = models.DateTimeField(help_text="... and up to this")
    status = models.CharField(max_length=20, choices=DriftStatus.choices)
    outcomes = models.PositiveIntegerField(default=0, help_text="outcomes recorded in the window")
    rows = models.JSONField(default=dict, help_text="recent segments compared per kind (gap, trip)")
    max_psi = models.FloatField(null=True, blank=True, help_text="the largest PSI among the scored features")
    worst_feature = models.CharField(max_length=64, blank=True, default="", help_text="kind.feature of max_psi")
    features = models.JSONField(default=dict, help_text="per kind and feature: psi, status, recent shares")
    thresholds = models.JSONField(default=dict, help_text="the PSI thresholds and minimum rows judged by")

    class Meta:
        ordering = ["-checked_at", "-id"]
        indexes = [models.Index(fields=["model_version", "-checked_at", "-id"], name="drift_latest_per_model")]
        constraints = [
            models.CheckConstraint(condition=Q(window_start__lt=F("window_end")), name="drift_window_ordered"),
            models.CheckConstraint(
                condition=Q(status__in=["ok", "warn", "drift", "insufficient_data"]), name="drift_status_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"drift check of model #{self.model_version_id}: {self.status} (window to {self.window_end:%Y-%m-%d})"
