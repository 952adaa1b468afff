"""The seed's response bodies for the five events, built inside the event's transaction."""

from __future__ import annotations

from bookings.models import EventType
from bookings.services import EventResult
from common.api.fields import iso
from learning.models import BookingOutcome, VehiclePattern, confidence_for
from predictions.bodies import affected_item, interval_body
from predictions.models import Prediction


def _base(result: EventResult, affected: list[Prediction]) -> dict:
    booking = result.booking
    return {
        "status": "success" if result.applied else "ignored",
        "booking_id": booking.external_id if booking else result.event.booking_external_id,
        "booking_status": booking.status if booking else None,
        "notes": result.notes,
        "affected_bookings": [affected_item(p) for p in affected],
    }


def respond(result: EventResult) -> dict:
    predictions = result.predictions
    booking_id = result.event.booking_external_id
    kind = result.event.event_type
    if kind == EventType.CREATED:
        own = next((p for p in predictions if p.booking_external_id == booking_id), None)
        body = _base(result, [p for p in predictions if p is not own])
        body.update(
            {
                "prediction_id": own.prediction_id if own else None,
                "predicted_battery": own.predicted_battery if own else None,
                "confidence_interval": interval_body(own) if own else None,
                "prediction_method": own.prediction_method if own else None,
                "starts_at": iso(own.booking_start_time) if own else None,
            }
        )
        return body
    body = _base(result, predictions)
    learning = result.start_learning
    if kind == EventType.STARTED:
        body["prediction_error"] = learning.prediction_error if learning else None
        body["patterns_updated"] = bool(learning and learning.patterns_updated)
    elif kind == EventType.ENDED:
        pattern = VehiclePattern.objects.filter(vehicle_id=result.event.vehicle_id).first()
        outcome = BookingOutcome.objects.filter(booking=result.booking).first() if result.applied else None
        avg = pattern.avg_drain_rate_per_hour if pattern else None
        total = pattern.total_bookings if pattern else 0
        body.update(
            {
                "outcome_recorded": outcome is not None,
                "drain_rate_updated": bool(outcome and outcome.drain_rate_per_hour is not None),
                "new_avg_drain_rate": None if avg is None else round(avg, 2),
                "pattern_confidence": confidence_for(total),
                "total_bookings": total,
                "queued_for_retraining": bool(outcome and not outcome.used_for_training),
                "prediction_error": learning.prediction_error if learning else None,
            }
        )
    elif kind == EventType.MODIFIED:
        body["prediction_updated"] = any(p.booking_external_id == booking_id for p in predictions)
    elif kind == EventType.CANCELLED:
        body["prediction_cancelled"] = result.applied
    return body
