"""Reads of predictions: a booking's current one, the ones an event issued, a car's latest reading."""

from __future__ import annotations

from datetime import datetime
from functools import cache as once

from django.db import connection

from bookings.models import BatteryReading, InboundEvent, Vehicle
from common.rows import db_value, instance, instances, select_sql
from predictions.models import Prediction


def prediction_current(*, booking_id: str) -> Prediction | None:
    """The booking's current prediction (one indexed query)."""
    return Prediction.objects.filter(booking_external_id=booking_id, is_current=True).select_related("vehicle").first()


def prediction_current_error(*, booking_id: str) -> float | None:
    """The error scoring stored on the booking's current prediction; None without one or before its pick-up.

    SQL built once: the pick-up's answer reads it back on every `booking.started`."""
    with connection.cursor() as cursor:
        cursor.execute(_current_error_sql(), [booking_id])
        row = cursor.fetchone()
    return row[0] if row else None


@once
def _current_error_sql() -> str:
    qn = connection.ops.quote_name
    return (
        f"SELECT {qn('prediction_error')} FROM {qn(Prediction._meta.db_table)} "
        f"WHERE {qn('booking_external_id')} = %s AND {qn('is_current')} "
        f"ORDER BY {qn('predicted_at')} DESC, {qn('id')} DESC LIMIT 1"
    )


@once
def _reading_sql(bounded: bool) -> str:
    qn = connection.ops.quote_name
    where = f"{qn('vehicle_id')} = %s" + (f" AND {qn('recorded_at')} <= %s" if bounded else "")
    return select_sql(BatteryReading, where, f"{qn('recorded_at')} DESC, {qn('id')} DESC") + " LIMIT 1"


def reading_latest(*, vehicle: Vehicle, at_or_before: datetime | None = None) -> BatteryReading | None:
    """The car's last known level (optionally the last one known at a given moment)."""
    params = [vehicle.pk]
    if at_or_before is not None:
        params.append(db_value(BatteryReading, "recorded_at", at_or_before))
    return instance(BatteryReading, _reading_sql(at_or_before is not None), params)


def predictions_issued_by(*, event: InboundEvent) -> list[Prediction]:
    """The predictions an event's cascade stored (tagged with the event), in the order they were issued.

    They are inserted in one batch in the cascade's order (by scheduled start), so their ids keep it.
    """
    return instances(Prediction, _issued_sql(), [event.pk])


@once
def _issued_sql() -> str:
    qn = connection.ops.quote_name
    return select_sql(Prediction, f"{qn('trigger_event_id')} = %s", qn("id"))
