"""Every prediction ever issued, kept; a booking's current one is flagged `is_current`."""

from django.db import models
from django.db.models import F, Q

from bookings.models import Booking, InboundEvent, Vehicle


class PredictionMethod(models.TextChoices):
    HISTORICAL = "historical", "historical"
    REAL_TIME = "real_time", "real_time"
    REAL_TIME_CASCADE = "real_time_cascade", "real_time_cascade"
    # The same modes when no trained model serves and the pattern cascade answers alone.
    PATTERN_HISTORICAL = "pattern_historical", "pattern_historical"
    PATTERN_REAL_TIME = "pattern_real_time", "pattern_real_time"
    PATTERN_REAL_TIME_CASCADE = "pattern_real_time_cascade", "pattern_real_time_cascade"


class PredictionStatus(models.TextChoices):
    PENDING = "pending", "pending"
    COMPLETED = "completed", "completed"
    CANCELLED = "cancelled", "cancelled"


class Prediction(models.Model):
    prediction_id = models.CharField(max_length=120, unique=True)
    booking_external_id = models.CharField(
        max_length=64, blank=True, default="", help_text="Laravel's booking id, also for bookings not yet created."
    )
    booking = models.ForeignKey(Booking, on_delete=models.CASCADE, null=True, blank=True, related_name="predictions")
    vehicle = models.ForeignKey(Vehicle, on_delete=models.CASCADE, related_name="predictions")
    user_id = models.CharField(max_length=64, blank=True, default="")
    predicted_at = models.DateTimeField(help_text="When the prediction was made.")
    booking_start_time = models.DateTimeField(help_text="The moment the prediction is for.")
    predicted_battery = models.FloatField()
    confidence_lower = models.FloatField()
    confidence_upper = models.FloatField()
    confidence_level = models.FloatField(default=0.95)
    prediction_method = models.CharField(max_length=32, choices=PredictionMethod.choices)
    model_version = models.CharField(max_length=64)
    cascade_steps = models.JSONField(default=list, blank=True)
    trigger = models.CharField(max_length=32, help_text="predict, batch or the event type that caused it.")
    calibration_key = models.CharField(
        max_length=64, blank=True, default="", help_text="The IntervalCalibration row that stretched its interval."
    )
    trigger_event = models.ForeignKey(
        InboundEvent, on_delete=models.SET_NULL, null=True, blank=True, related_name="predictions"
    )
    is_current = models.BooleanField(default=False)
    status = models.CharField(max_length=16, choices=PredictionStatus.choices, default=PredictionStatus.PENDING)
    actual_battery = models.FloatField(null=True, blank=True)
    prediction_error = models.FloatField(null=True, blank=True, help_text="actual - predicted")
    # Shadow scoring (predictions.shadow): which candidate served, the kind it was chosen for, and what every
    # candidate said, so the pick-up scores them all.
    served_by = models.CharField(max_length=16, blank=True, default="", db_default="")
    shadow_kind = models.CharField(max_length=48, blank=True, default="", db_default="")
    model_level = models.FloatField(null=True, blank=True, help_text="the champion model's level, when one served")
    pattern_level = models.FloatField(null=True, blank=True, help_text="the pattern cascade's level")
    persistence_level = models.FloatField(null=True, blank=True, help_text="the walk's starting level")

    class Meta:
        ordering = ["-predicted_at", "-id"]
        indexes = [
            models.Index(fields=["booking_external_id", "-predicted_at"]),
            models.Index(fields=["booking", "-predicted_at"]),
            models.Index(fields=["vehicle", "-predicted_at"]),
            models.Index(fields=["-predicted_at", "-id"], name="prediction_newest_first"),
            # The accuracy page scans the scored prediction of each booking by pick-up time; on Postgres the
            # index also carries the columns it aggregates, so a year of bookings is an index-only scan.
            models.Index(
                fields=["booking_start_time"],
                condition=Q(is_current=True, actual_battery__isnull=False),
                include=[
                    "predicted_at",
                    "predicted_battery",
                    "actual_battery",
                    "prediction_error",
                    "confidence_lower",
                    "confidence_upper",
                    "model_version",
                    "vehicle",
                    "user_id",
                ],
                name="prediction_scored_by_start",
            ),
            # Retention (predictions/retention.py) finds the superseded predictions that have outlived their
            # window without walking every booking's current one.
            models.Index(fields=["predicted_at"], condition=Q(is_current=False), name="prediction_superseded_at"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["booking_external_id"],
                condition=Q(is_current=True) & ~Q(booking_external_id=""),
                name="one_current_prediction_per_booking",
            ),
            models.CheckConstraint(
                condition=Q(predicted_battery__gte=0, predicted_battery__lte=100), name="prediction_0_100"
            ),
            models.CheckConstraint(
                condition=Q(confidence_lower__lte=F("predicted_battery"))
                & Q(confidence_upper__gte=F("predicted_battery")),
                name="prediction_inside_interval",
            ),
        ]

    # Remarks about how a request was read (e.g. a late pick-up predicted from now), for the response that
    # issues the prediction; not stored.
    notes: list[str] = []

    def __str__(self) -> str:
        return self.prediction_id


# The callback outbox (issue 4), the model registry, the drift checks (issue 5) and the interval
# calibration live in their own modules; imported here so Django sees their models.
from predictions.calibration_models import IntervalCalibration  # noqa: E402, F401
from predictions.drift_models import DriftCheck, DriftStatus  # noqa: E402, F401
from predictions.outbox_models import CallbackAttempt, CallbackItem, CallbackOutbox, EndpointCircuit  # noqa: E402, F401
from predictions.registry_models import ModelStatus, ModelVersion  # noqa: E402, F401
from predictions.shadow_models import PredictorScore  # noqa: E402, F401
