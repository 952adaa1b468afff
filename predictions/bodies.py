"""The wire shapes of a stored prediction, each built in one place.

The same prediction reaches Laravel three ways: the `/predict` response (and the current prediction
and batch, which have its shape), an item of an event response's `affected_bookings` (and the car
timeline's `prediction`), and an item of a `predictions.updated` callback. Laravel matches them by
key, so every one of them is built here and nowhere else.
"""

from __future__ import annotations

from common.api.fields import iso
from predictions.models import Prediction


def interval_body(p: Prediction) -> dict:
    """The seed's `confidence_interval` object."""
    return {"lower": p.confidence_lower, "upper": p.confidence_upper, "confidence_level": p.confidence_level}


def readiness_body(p: Prediction) -> dict | None:
    """The `readiness` object: will the car have what the booking needs at pick-up (docs/readiness.md).

    Read from the numbers stored with the prediction; null for a prediction stored before readiness existed.
    """
    if p.probability_ready is None:
        return None
    return {
        "required_level": p.required_level,
        "probability_ready": p.probability_ready,
        "at_risk": p.at_risk,
        "charge_needed": p.charge_needed,
        "plug_in_by": iso(p.plug_in_by),
    }


def affected_item(p: Prediction) -> dict:
    """One booking's prediction as an `affected_bookings` item of an event response.

    `sequence` (the prediction's row id) orders two predictions of the same booking: the higher is newer.
    """
    return {
        "booking_id": p.booking_external_id,
        "predicted_battery": p.predicted_battery,
        "confidence_interval": interval_body(p),
        "starts_at": iso(p.booking_start_time),
        "prediction_method": p.prediction_method,
        "prediction_id": p.prediction_id,
        "model_version": p.model_version,
        "predicted_at": iso(p.predicted_at),
        "sequence": p.pk,
        "readiness": readiness_body(p),
    }


def callback_item(p: Prediction) -> dict:
    """One booking's prediction in a `predictions.updated` callback: the event item, plus the seed's
    `booking_start_time` (the name the seed's MLCallbackController reads)."""
    item = affected_item(p)
    item["booking_start_time"] = item["starts_at"]
    return item


def prediction_body(p: Prediction, *, vehicle_external_id: str | None = None) -> dict:
    """The seed's predict response for a stored prediction (plus its id, version and target time)."""
    return {
        "booking_id": p.booking_external_id or None,
        "vehicle_id": vehicle_external_id or p.vehicle.external_id,
        "predicted_battery_percentage": p.predicted_battery,
        "confidence_interval": interval_body(p),
        "prediction_method": p.prediction_method,
        "cascade_steps": p.cascade_steps,
        "timestamp": iso(p.predicted_at),
        "prediction_id": p.prediction_id,
        "model_version": p.model_version,
        "booking_start_time": iso(p.booking_start_time),
        "notes": list(p.notes),
        "served_by": p.served_by,
        "readiness": readiness_body(p),
    }
