"""What the platform tells us: cars, bookings, battery readings and the raw inbound events."""

from django.db import models
from django.db.models import F, Q


class Vehicle(models.Model):
    """A car, identified by Laravel's id as a string (`78` and `"78"` are the same car).

    Events for one car are serialized by locking this row (`select_for_update`).
    """

    external_id = models.CharField(max_length=64, unique=True)
    # Where the car stands, as the platform's events last said (optional `zone`): swaps are suggested in the same
    # zone only. Empty: unknown, any free car may be suggested.
    zone = models.CharField(max_length=64, blank=True, default="", db_index=True)
    # Moves on with every change of what the car's predictions start from (each `vehicle_lock` but a historical
    # /predict's): a stored prediction made at an older revision is not answered again (`predictions.reuse`).
    revision = models.PositiveBigIntegerField(default=0, help_text="Changes counted, for reusing predictions.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["external_id"]

    def __str__(self) -> str:
        return f"Vehicle {self.external_id}"


class BookingStatus(models.TextChoices):
    SCHEDULED = "scheduled", "Scheduled"
    ACTIVE = "active", "Active"
    COMPLETED = "completed", "Completed"
    CANCELLED = "cancelled", "Cancelled"
    # Its start passed NO_SHOW_GRACE_HOURS ago and nobody picked it up: no longer predicted or cascaded.
    # A late booking.started (or .ended, .modified, .cancelled) still applies, as to a scheduled booking.
    NO_SHOW = "no_show", "No-show"


# Not picked up yet: the statuses that booking.started, .ended, .modified and .cancelled may still move.
NOT_STARTED = (BookingStatus.SCHEDULED, BookingStatus.NO_SHOW)
# The statuses no event can move a booking out of.
FINAL_STATUSES = (BookingStatus.COMPLETED, BookingStatus.CANCELLED)


class Booking(models.Model):
    external_id = models.CharField(max_length=64, unique=True)
    vehicle = models.ForeignKey(Vehicle, on_delete=models.PROTECT, related_name="bookings")
    user_id = models.CharField(max_length=64, blank=True, default="")
    status = models.CharField(max_length=16, choices=BookingStatus.choices, default=BookingStatus.SCHEDULED)
    scheduled_start = models.DateTimeField()
    scheduled_end = models.DateTimeField(null=True, blank=True)
    actual_start = models.DateTimeField(null=True, blank=True)
    actual_end = models.DateTimeField(null=True, blank=True)
    battery_at_start = models.FloatField(null=True, blank=True)
    battery_at_end = models.FloatField(null=True, blank=True)
    mileage_at_start = models.FloatField(null=True, blank=True)
    mileage_at_end = models.FloatField(null=True, blank=True)
    charging_at_end = models.BooleanField(null=True, blank=True)
    cancelled_at = models.DateTimeField(null=True, blank=True)
    # What the renter needs at pick-up (issue 16), as booking.created or .modified last said: a level, or a
    # distance the predictor turns into one; neither means the fleet's READINESS_MIN_LEVEL.
    required_battery = models.FloatField(null=True, blank=True, help_text="Level needed at pick-up, %.")
    planned_distance_km = models.FloatField(null=True, blank=True, help_text="Distance the renter plans to drive.")
    # Whether the last `booking.readiness_changed` callback said it was at risk (null: none sent yet, i.e. not at
    # risk as far as Laravel knows). A new prediction whose `at_risk` differs owes Laravel another one.
    readiness_at_risk = models.BooleanField(null=True, blank=True, help_text="At risk, as Laravel was last told.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["scheduled_start"]
        indexes = [
            models.Index(fields=["vehicle", "status", "scheduled_start"]),
            models.Index(fields=["-scheduled_start", "-id"], name="booking_newest_first"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(scheduled_end__isnull=True) | Q(scheduled_end__gt=F("scheduled_start")),
                name="booking_scheduled_end_after_start",
            ),
            models.CheckConstraint(
                condition=Q(actual_end__isnull=True)
                | Q(actual_start__isnull=True)
                | Q(actual_end__gte=F("actual_start")),
                name="booking_actual_end_not_before_start",
            ),
            models.CheckConstraint(
                condition=Q(battery_at_start__isnull=True) | Q(battery_at_start__gte=0, battery_at_start__lte=100),
                name="booking_battery_at_start_0_100",
            ),
            models.CheckConstraint(
                condition=Q(battery_at_end__isnull=True) | Q(battery_at_end__gte=0, battery_at_end__lte=100),
                name="booking_battery_at_end_0_100",
            ),
            models.CheckConstraint(condition=Q(status__in=BookingStatus.values), name="booking_status_valid"),
            models.CheckConstraint(
                condition=Q(required_battery__isnull=True)
                | Q(required_battery__gte=0, required_battery__lte=100, planned_distance_km__isnull=True),
                name="booking_required_battery_0_100_alone",
            ),
            models.CheckConstraint(
                condition=Q(planned_distance_km__isnull=True) | Q(planned_distance_km__gte=0),
                name="booking_planned_distance_non_negative",
            ),
        ]

    def __str__(self) -> str:
        return f"Booking {self.external_id} ({self.status})"

    @property
    def start(self):
        """When the car is (or was) picked up: the actual time once known."""
        return self.actual_start or self.scheduled_start

    @property
    def end(self):
        """When the car is (or was) returned: the actual time once known."""
        return self.actual_end or self.scheduled_end


class ReadingSource(models.TextChoices):
    BOOKING_CREATED = "booking_created", "booking.created"
    BOOKING_STARTED = "booking_started", "booking.started"
    BOOKING_ENDED = "booking_ended", "booking.ended"
    PREDICT_REQUEST = "predict_request", "predict request"


class BatteryReading(models.Model):
    """Every battery level the platform told us, with its time and where it came from."""

    vehicle = models.ForeignKey(Vehicle, on_delete=models.CASCADE, related_name="readings")
    booking = models.ForeignKey(Booking, on_delete=models.SET_NULL, null=True, blank=True, related_name="readings")
    level = models.FloatField()
    recorded_at = models.DateTimeField()
    source = models.CharField(max_length=32, choices=ReadingSource.choices)
    charging = models.BooleanField(null=True, blank=True, help_text="Plugged in at this moment, when known.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-recorded_at", "-id"]
        indexes = [
            models.Index(fields=["vehicle", "-recorded_at"]),
            # The fleet's clock (`bookings.selectors.fleet_clock`): the newest reading of any car.
            models.Index(fields=["-recorded_at"], name="reading_newest_first"),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(level__gte=0, level__lte=100), name="reading_level_0_100"),
        ]

    def __str__(self) -> str:
        return f"{self.level:.1f}% at {self.recorded_at:%Y-%m-%d %H:%M} ({self.source})"


class EventType(models.TextChoices):
    CREATED = "booking.created", "booking.created"
    STARTED = "booking.started", "booking.started"
    ENDED = "booking.ended", "booking.ended"
    MODIFIED = "booking.modified", "booking.modified"
    CANCELLED = "booking.cancelled", "booking.cancelled"


IDEMPOTENCY_KEY_MAX_CHARS = 160  # a longer webhook-id or Idempotency-Key is refused, never cut short


class InboundEvent(models.Model):
    """One webhook as received, with the response we gave: replays are answered from here.

    `idempotency_key` is set when the platform sent a webhook-id or Idempotency-Key header (scoped by event
    type); without one it is empty and a replay is recognised by `body_hash` (docs/events.md, "Replays").
    """

    event_type = models.CharField(max_length=32, choices=EventType.choices)
    booking_external_id = models.CharField(max_length=64, db_index=True)
    vehicle = models.ForeignKey(Vehicle, on_delete=models.CASCADE, related_name="events")
    idempotency_key = models.CharField(max_length=200, unique=True, null=True, blank=True)
    body_hash = models.CharField(
        max_length=64, blank=True, default="", db_default="", help_text="SHA-256 of the body's canonical JSON."
    )
    body = models.JSONField(
        null=True, blank=True, help_text="As received; emptied after RETENTION_INBOUND_BODY_DAYS (the key stays)."
    )
    response = models.JSONField(null=True, blank=True)
    applied = models.BooleanField(default=True, help_text="False when the event could not move the booking.")
    received_at = models.DateTimeField(auto_now_add=True)
    duplicates = models.PositiveIntegerField(default=0, help_text="How many times it was delivered again.")

    class Meta:
        ordering = ["-received_at", "-id"]
        indexes = [
            models.Index(fields=["event_type", "-received_at"]),
            models.Index(fields=["-received_at", "-id"], name="inbound_event_newest_first"),
            # The replay check without a header key: the car's newest event.
            models.Index(fields=["vehicle", "-id"], name="inbound_event_vehicle_newest"),
            # Retention (callbacks/retention.py) finds the bodies still stored that have outlived their window.
            models.Index(fields=["received_at"], condition=Q(body__isnull=False), name="inbound_event_body_kept"),
        ]

    def __str__(self) -> str:
        return f"{self.event_type} {self.booking_external_id}"
