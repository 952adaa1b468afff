"""The seed's response bodies for the five events, read from what the event stored.

Built inside the event's transaction, after the cascade: the predictions are the ones the cascade
stored tagged with the event, the start's prediction error is the one scoring stored on the
booking's current prediction, and the outcome and pattern are the rows learning wrote.
"""

from __future__ import annotations

from dataclasses import dataclass

from bookings.models import Booking, EventType, InboundEvent
from common.api.fields import iso
from learning.models import confidence_for
from learning.selectors import outcome_of, pattern_pickup_lessons, vehicle_pattern_stored
from predictions.bodies import affected_item, interval_body, readiness_body
from predictions.models import Prediction
from predictions.selectors import prediction_current_error


@dataclass(frozen=True)
class StartLearned:
    """What the pick-up's receivers stored: the current prediction's error, and whether the car's pattern moved."""

    prediction_error: float | None
    patterns_updated: bool


def start_learned(*, booking: Booking, lessons_before: int) -> StartLearned:
    """Read back what scoring and learning stored about the booking's pick-up level.

    `lessons_before` is `pattern_pickup_lessons` of the car read before the pick-up was sent to them.
    """
    error = prediction_current_error(booking_id=booking.external_id)
    return StartLearned(
        prediction_error=None if error is None else round(error, 2),
        patterns_updated=pattern_pickup_lessons(vehicle=booking.vehicle) > lessons_before,
    )


def _base(*, event: InboundEvent, booking: Booking | None, applied: bool, notes: list[str], affected) -> dict:
    return {
        "status": "success" if applied else "ignored",
        "booking_id": booking.external_id if booking else event.booking_external_id,
        "booking_status": booking.status if booking else None,
        "notes": notes,
        "affected_bookings": [affected_item(p) for p in affected],
    }


def event_response(
    *,
    event: InboundEvent,
    booking: Booking | None,
    applied: bool,
    notes: list[str],
    start: StartLearned | None,
    issued: list[Prediction],
) -> dict:
    """The body for `event`: `issued` are the predictions its cascade stored, `start` what its pick-up taught."""
    booking_id = event.booking_external_id
    kind = event.event_type
    if kind == EventType.CREATED:
        own = next((p for p in issued if p.booking_external_id == booking_id), None)
        body = _base(
            event=event, booking=booking, applied=applied, notes=notes, affected=[p for p in issued if p is not own]
        )
        body.update(
            {
                "prediction_id": own.prediction_id if own else None,
                "predicted_battery": own.predicted_battery if own else None,
                "confidence_interval": interval_body(own) if own else None,
                "prediction_method": own.prediction_method if own else None,
                "starts_at": iso(own.booking_start_time) if own else None,
                "readiness": readiness_body(own) if own else None,
            }
        )
        return body
    body = _base(event=event, booking=booking, applied=applied, notes=notes, affected=issued)
    if kind == EventType.STARTED:
        body["prediction_error"] = start.prediction_error if start else None
        body["patterns_updated"] = bool(start and start.patterns_updated)
    elif kind == EventType.ENDED:
        pattern = vehicle_pattern_stored(vehicle_id=event.vehicle_id)
        outcome = outcome_of(booking_id=booking.pk) if applied and booking is not None else None
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
                "prediction_error": start.prediction_error if start else None,
            }
        )
    elif kind == EventType.MODIFIED:
        body["prediction_updated"] = any(p.booking_external_id == booking_id for p in issued)
    elif kind == EventType.CANCELLED:
        body["prediction_cancelled"] = applied
    return body
