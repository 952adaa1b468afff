"""Every prediction ever issued, kept (a booking's current one is flagged `is_current`), and what serving learns
from their outcomes: the interval calibration's margins and the shadow scores of each candidate predictor."""

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
    # Readiness (issue 16, docs/readiness.md): will the car have what the booking needs? Computed once when the
    # prediction is stored, from its own level and interval, so every response reads the same numbers; null on
    # predictions stored before readiness existed.
    required_level = models.FloatField(null=True, blank=True, help_text="level the booking needs at pick-up")
    required_std = models.FloatField(null=True, blank=True, help_text="its spread (a planned distance's), points")
    probability_ready = models.FloatField(null=True, blank=True, help_text="P(level at pick-up >= required_level)")
    at_risk = models.BooleanField(null=True, blank=True, help_text="probability_ready below READINESS_RISK_THRESHOLD")
    charge_needed = models.FloatField(null=True, blank=True, help_text="points to add so it reaches the threshold")
    plug_in_by = models.DateTimeField(null=True, blank=True, help_text="latest plug-in to gain charge_needed")
    # The car's `revision` when it was made: a historical /predict is answered with it again while the car has not
    # changed since (`predictions.reuse`). Null on predictions stored before reuse existed (never reused).
    vehicle_revision = models.PositiveBigIntegerField(null=True, blank=True, help_text="the car's revision then")

    class Meta:
        ordering = ["-predicted_at", "-id"]
        indexes = [
            models.Index(fields=["booking_external_id", "-predicted_at"]),
            models.Index(fields=["booking", "-predicted_at"]),
            models.Index(fields=["vehicle", "-predicted_at"]),
            models.Index(fields=["-predicted_at", "-id"], name="prediction_newest_first"),
            # The accuracy page scans the scored prediction of each booking by pick-up time; on Postgres the
            # index also carries the columns it aggregates (readiness's two included), so a year of bookings is
            # an index-only scan.
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
                    "probability_ready",
                    "required_level",
                ],
                name="prediction_scored_by_start",
            ),
            # Retention (callbacks/retention.py) finds the superseded predictions that have outlived their
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
                condition=Q(probability_ready__isnull=True) | Q(probability_ready__gte=0, probability_ready__lte=1),
                name="prediction_probability_ready_0_1",
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


# --- online interval calibration: two margins per kind of prediction, learned from scored outcomes ----------
# Written by `predictions.calibration` only (created on first use, moved by atomic updates when a booking's
# predictions are scored); prediction writes read them all in one query.
class IntervalCalibration(models.Model):
    """How far to move out the lower and the upper side of one kind of prediction's 95 % interval.

    `key` is `<model|pattern>|<trigger>[ (cascade)]|<lead time: hours from the present to the
    pick-up>`; see `predictions.calibration`. Margins are in points (0: as the predictor gave it).
    """

    key = models.CharField(max_length=64, unique=True)
    margin_lower = models.FloatField(default=0.0, help_text="points added below the predictor's interval")
    margin_upper = models.FloatField(default=0.0, help_text="points added above the predictor's interval")
    bookings = models.PositiveIntegerField(default=0, help_text="scored bookings that moved the margins")
    predictions = models.PositiveIntegerField(default=0, help_text="scored predictions among them")
    below = models.PositiveIntegerField(default=0, help_text="predictions whose actual fell below their interval")
    above = models.PositiveIntegerField(default=0, help_text="predictions whose actual fell above their interval")
    updated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["key"]

    def __str__(self) -> str:
        return self.key


class ReadinessCalibration(models.Model):
    """Where the fleet's actual levels fell in their predicted distributions, for one lead time, or one lead time
    and the car's last known state (issue 16).

    `key` is a lead-time bucket (`predictions.calibration.LEAD_TIMES`), or one and a state (`24-72h|charging`:
    `predictions.calibration.pit_keys`). `counts` holds the decayed weight of scored bookings per twentieth of
    the probability integral transform (`core.readiness.PIT_BINS`); the probability a prediction of that key
    states is recalibrated with it (`core.readiness.PitCalibration`).
    """

    key = models.CharField(max_length=16, unique=True)
    counts = models.JSONField(default=list, help_text="decayed weight of outcomes per PIT bin")
    bookings = models.FloatField(default=0.0, help_text="decayed number of scored bookings behind the counts")
    updated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["key"]

    def __str__(self) -> str:
        return self.key


# --- shadow scores: how far off each candidate predictor has been, per kind of prediction, on this fleet ------
# Written by `predictions.shadow` only (created on first use, moved by atomic updates when a booking is picked up
# and its predictions are scored); every prediction write reads them all in one cached query.
class PredictorScore(models.Model):
    """One candidate's exponentially weighted mean absolute error on one kind of prediction.

    `kind` is `<lead time>|<own|cascade>|<charging|parked|unknown>`, `-low` after parked or unknown for a car last
    known below `predictions.shadow.LOW_LEVEL` (see `predictions.shadow.shadow_kind`);
    `candidate` is `model`, `pattern`, `persistence` or `median`. Each scored booking adds its error with weight 1
    after the older weight decays by `predictions.shadow.DECAY`, so the score follows the fleet as it changes.
    """

    kind = models.CharField(max_length=48)
    candidate = models.CharField(max_length=16)
    weight = models.FloatField(default=0.0, help_text="decayed number of scored bookings")
    sum_abs_error = models.FloatField(default=0.0, help_text="decayed sum of absolute errors, in points")
    bookings = models.PositiveIntegerField(default=0, help_text="scored bookings, undecayed")
    updated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["kind", "candidate"]
        constraints = [models.UniqueConstraint(fields=["kind", "candidate"], name="one_score_per_kind_candidate")]

    def __str__(self) -> str:
        return f"{self.candidate} on {self.kind}"

    @property
    def mae(self) -> float | None:
        return self.sum_abs_error / self.weight if self.weight > 0 else None
