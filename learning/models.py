"""Outcomes, learned per-car and per-renter patterns, accuracy metrics, the model registry and its drift checks.

The registry's rows are written by `learning.training` (train, promote) and the drift checks by
`learning.drift`; serving reads the champion through `learning.champion`.
"""

import math

from django.db import models
from django.db.models import F, Q
from django.utils import timezone

from bookings.models import Booking, Vehicle


class BookingOutcome(models.Model):
    """The complete record of one finished booking: what the model and patterns learn from."""

    booking = models.OneToOneField(Booking, on_delete=models.CASCADE, related_name="outcome")
    vehicle = models.ForeignKey(Vehicle, on_delete=models.CASCADE, related_name="outcomes")
    user_id = models.CharField(max_length=64, blank=True, default="")
    starts_at = models.DateTimeField()
    ends_at = models.DateTimeField()
    duration_hours = models.FloatField()
    battery_at_start = models.FloatField()
    battery_at_end = models.FloatField()
    battery_drain = models.FloatField(help_text="start - end; negative when topped up on the road.")
    charging_at_end = models.BooleanField(default=False)
    distance_km = models.FloatField(null=True, blank=True)
    drain_rate_per_hour = models.FloatField(null=True, blank=True)
    drain_rate_per_km = models.FloatField(null=True, blank=True)
    used_for_training = models.BooleanField(default=False)
    recorded_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-ends_at"]
        indexes = [models.Index(fields=["vehicle", "-ends_at"]), models.Index(fields=["user_id"])]
        constraints = [
            models.CheckConstraint(condition=Q(duration_hours__gte=0), name="outcome_duration_non_negative"),
            models.CheckConstraint(
                condition=Q(battery_at_start__gte=0, battery_at_start__lte=100)
                & Q(battery_at_end__gte=0, battery_at_end__lte=100),
                name="outcome_battery_0_100",
            ),
        ]

    def __str__(self) -> str:
        return f"Outcome of {self.booking_id}"


class ConfidenceLevel(models.TextChoices):
    LOW = "low", "low (< 5 bookings)"
    MEDIUM = "medium", "medium (5-20 bookings)"
    HIGH = "high", "high (20+ bookings)"


def confidence_for(total_bookings: int) -> str:
    """The seed's rule: fewer than 5 bookings is low, 5 to 19 medium, 20 and more high."""
    if total_bookings < 5:
        return ConfidenceLevel.LOW
    if total_bookings < 20:
        return ConfidenceLevel.MEDIUM
    return ConfidenceLevel.HIGH


class VehiclePattern(models.Model):
    """Per-car rates learned online by EMA (alpha 0.3), with their spread and observation counts.

    Rates are in battery points (percent of capacity). `None` means never observed: the
    predictor then borrows the fleet average. Spreads are kept as EW variances.
    """

    vehicle = models.OneToOneField(Vehicle, on_delete=models.CASCADE, related_name="pattern")
    avg_drain_rate_per_hour = models.FloatField(null=True, blank=True, help_text="While driven, % per hour.")
    var_drain_rate_per_hour = models.FloatField(default=0.0)
    drive_observations = models.PositiveIntegerField(default=0)
    avg_drain_rate_per_km = models.FloatField(null=True, blank=True)
    var_drain_rate_per_km = models.FloatField(default=0.0)
    km_observations = models.PositiveIntegerField(default=0)
    avg_idle_drain_per_hour = models.FloatField(null=True, blank=True, help_text="Parked, unplugged, % per hour.")
    var_idle_drain_per_hour = models.FloatField(default=0.0)
    idle_observations = models.PositiveIntegerField(default=0)
    baseline_idle_drain_per_hour = models.FloatField(
        null=True,
        blank=True,
        help_text="Long-run idle drain (slow EMA, alpha 0.05): what a jump in idle drain is judged against.",
    )
    baseline_var_idle_drain_per_hour = models.FloatField(default=0.0)
    baseline_idle_observations = models.PositiveIntegerField(
        default=0, help_text="Parked gaps in the long-run idle drain (it is a plain mean for the first 20)."
    )
    avg_charging_rate_per_hour = models.FloatField(null=True, blank=True, help_text="Parked, plugged in, % per hour.")
    var_charging_rate_per_hour = models.FloatField(default=0.0)
    charge_observations = models.PositiveIntegerField(default=0)
    charge_ceiling = models.FloatField(
        null=True,
        blank=True,
        help_text="Where its charging stops (a charge limit), once two charging gaps stopped there; null: full.",
    )
    ceiling_candidate = models.FloatField(
        null=True, blank=True, help_text="Where the last charging gap that flattened stopped (core.ema)."
    )
    unreported_charges = models.PositiveIntegerField(
        default=0, help_text="Gaps where the car gained charge without being left plugged in (staff, top-ups)."
    )
    charging_frequency = models.FloatField(default=0.0, help_text="total_charges / total_bookings")
    total_charges = models.PositiveIntegerField(default=0)
    total_bookings = models.PositiveIntegerField(default=0)
    error_corrections = models.PositiveIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(charging_frequency__gte=0, charging_frequency__lte=1), name="vehicle_charging_freq_0_1"
            ),
        ]

    def __str__(self) -> str:
        return f"Pattern of {self.vehicle}"

    @property
    def std_drain_rate_per_hour(self) -> float:
        return math.sqrt(self.var_drain_rate_per_hour)

    @property
    def std_idle_drain_per_hour(self) -> float:
        return math.sqrt(self.var_idle_drain_per_hour)

    @property
    def std_charging_rate_per_hour(self) -> float:
        return math.sqrt(self.var_charging_rate_per_hour)

    @property
    def pattern_confidence(self) -> str:
        return confidence_for(self.total_bookings)


class UserPattern(models.Model):
    """Per-renter habits learned by EMA: level left on return, plugging in, trip length, drain."""

    user_id = models.CharField(max_length=64, unique=True)
    avg_return_battery = models.FloatField(null=True, blank=True)
    charging_frequency = models.FloatField(default=0.0, help_text="Share of bookings ended plugged in.")
    total_charges = models.PositiveIntegerField(default=0)
    avg_duration_hours = models.FloatField(null=True, blank=True)
    avg_drain_rate_per_hour = models.FloatField(null=True, blank=True)
    var_drain_rate_per_hour = models.FloatField(default=0.0)
    drive_observations = models.PositiveIntegerField(default=0)
    # Per km, as for cars: what turns a renter's planned distance into the level the booking needs (readiness).
    avg_drain_rate_per_km = models.FloatField(null=True, blank=True)
    var_drain_rate_per_km = models.FloatField(default=0.0)
    km_observations = models.PositiveIntegerField(default=0)
    total_bookings = models.PositiveIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(charging_frequency__gte=0, charging_frequency__lte=1), name="user_charging_freq_0_1"
            ),
        ]

    def __str__(self) -> str:
        return f"Renter {self.user_id}"


class AccuracyMetric(models.Model):
    """Daily running sums of prediction errors per model version and method, scored at pick-up.

    Sums rather than averages, so every new error is one `F()` update and figures can be
    re-aggregated over any period.
    """

    date = models.DateField()
    model_version = models.CharField(max_length=64)
    prediction_method = models.CharField(max_length=32)
    count = models.PositiveIntegerField(default=0)
    sum_abs_error = models.FloatField(default=0.0)
    sum_sq_error = models.FloatField(default=0.0)
    sum_error = models.FloatField(default=0.0)
    within_5 = models.PositiveIntegerField(default=0)
    within_10 = models.PositiveIntegerField(default=0)
    within_15 = models.PositiveIntegerField(default=0)
    inside_interval = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-date", "model_version"]
        constraints = [
            models.UniqueConstraint(
                fields=["date", "model_version", "prediction_method"], name="one_accuracy_row_per_day_model_method"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.date} {self.model_version} {self.prediction_method}"

    @staticmethod
    def increments(error: float, inside_interval: bool) -> dict[str, float | int]:
        """What one scored prediction adds to its day's row (`error`: actual minus predicted)."""
        size = abs(error)
        counts = {"count": 1, "within_5": int(size <= 5), "within_10": int(size <= 10), "within_15": int(size <= 15)}
        sums = {"sum_abs_error": size, "sum_sq_error": error * error, "sum_error": error}
        return counts | sums | {"inside_interval": int(inside_interval)}

    def _share(self, value: int) -> float | None:
        return value / self.count if self.count else None

    @property
    def mae(self) -> float | None:
        return self.sum_abs_error / self.count if self.count else None

    @property
    def rmse(self) -> float | None:
        return math.sqrt(self.sum_sq_error / self.count) if self.count else None

    @property
    def bias(self) -> float | None:
        return self.sum_error / self.count if self.count else None

    @property
    def share_within_10(self) -> float | None:
        return self._share(self.within_10)

    @property
    def coverage(self) -> float | None:
        return self._share(self.inside_interval)


# --- the model registry: every trained model is a row; exactly one champion serves predictions ----------------


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
        db_table = "predictions_modelversion"  # the registry's table from before it moved to learning (issue 14)
        ordering = ["-trained_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["status"], condition=Q(status="champion"), name="one_champion_model")
        ]

    def __str__(self) -> str:
        return f"{self.version} ({self.status})"


# --- the weekly drift check: how far the champion's recent inputs moved from those of its training window --


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

    model_version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="drift_checks")
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
        db_table = "predictions_driftcheck"  # as the registry's
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
