"""Reads of predictions: a booking's current one, a car's last known level."""

from __future__ import annotations

from datetime import datetime

from bookings.models import BatteryReading, Vehicle
from predictions.models import Prediction


def prediction_current(*, booking_id: str) -> Prediction | None:
    """The booking's current prediction (one indexed query)."""
    return Prediction.objects.filter(booking_external_id=booking_id, is_current=True).select_related("vehicle").first()


def reading_latest(*, vehicle: Vehicle, at_or_before: datetime | None = None) -> BatteryReading | None:
    """The car's last known level (optionally the last one known at a given moment)."""
    readings = BatteryReading.objects.filter(vehicle=vehicle)
    if at_or_before is not None:
        readings = readings.filter(recorded_at__lte=at_or_before)
    return readings.order_by("-recorded_at", "-id").first()
