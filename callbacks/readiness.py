"""Telling Laravel when a booking becomes at risk, or stops being: `booking.readiness_changed` (issue 16).

Every stored prediction of a booking carries its readiness (`core.readiness`). When its `at_risk` differs from
what the last readiness callback told Laravel (`Booking.readiness_at_risk`; none yet means "not at risk"), the
outbox owes Laravel a callback naming the booking, the prediction with its readiness and, for a booking that
became at risk, `suggested_vehicles`: other cars free over the whole booking window, in the booking car's zone
when the platform gave one, best chance of being ready first. It goes through the same outbox as the prediction
updates (signed, at least once, retried), written in the transaction that stored the prediction; its items
order it against newer readiness callbacks of the same booking, never against prediction updates.

Why only bookings picked up within READINESS_ALERT_HOURS: far ahead, a wide interval alone puts a booking below
the threshold, though the bookings and returns still to come will settle it; nobody can act on that yet. Such a
booking is alerted by the first prediction inside the window that still finds it at risk (an event of its car or
a `/predict`), and a booking Laravel was told is at risk is always told when it stops being.

Why only the fullest few free cars are priced: pricing a car walks its schedule with the serving predictor
(milliseconds each, inside the event's transaction); a flip is rare, but a zone may hold hundreds of cars.
The free cars are ranked by their last reported level (one query) and the READINESS_SWAP_POOL fullest priced.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Exists, F, OuterRef, Q, Subquery
from django.utils import timezone

from bookings.models import BatteryReading, Booking, BookingStatus, InboundEvent, Vehicle
from bookings.services import booking_readiness_told
from callbacks.models import CallbackOutbox
from callbacks.services import READINESS_EVENT, envelope_body, outbox_write
from common.api.fields import iso
from core.readiness import Requirement
from predictions.bodies import affected_item, interval_body
from predictions.models import Prediction
from predictions.services import prediction_hypothetical

__all__ = ["readiness_changes_enqueue", "swaps_suggested", "vehicles_free"]


def vehicles_free(*, booking: Booking, vehicle: Vehicle) -> list[Vehicle]:
    """Other cars with no scheduled or active booking overlapping the booking's window, in its car's zone when
    known, fullest last reported level first (never reported: last); at most READINESS_SWAP_POOL."""
    start = booking.scheduled_start
    end = booking.scheduled_end or start
    busy = Booking.objects.filter(
        vehicle=OuterRef("pk"), status__in=[BookingStatus.SCHEDULED, BookingStatus.ACTIVE], scheduled_start__lt=end
    ).filter(Q(scheduled_end__gt=start) | Q(scheduled_end__isnull=True))
    last_level = BatteryReading.objects.filter(vehicle=OuterRef("pk")).order_by("-recorded_at", "-id").values("level")
    cars = Vehicle.objects.exclude(pk=vehicle.pk).filter(~Exists(busy))
    if vehicle.zone:
        cars = cars.filter(zone=vehicle.zone)
    cars = cars.annotate(last_level=Subquery(last_level[:1])).select_related("pattern")  # priced without a read each
    return list(cars.order_by(F("last_level").desc(nulls_last=True), "external_id")[: settings.READINESS_SWAP_POOL])


def swaps_suggested(*, booking: Booking, vehicle: Vehicle, prediction: Prediction) -> list[dict]:
    """The free cars most likely to be ready for the booking, best first (READINESS_SUGGESTIONS at most), each
    priced for the booking's start against the same requirement as the booking's own prediction."""
    requirement = Requirement(level=prediction.required_level or 0.0, std=prediction.required_std or 0.0)
    now = timezone.now()
    priced = [
        (
            car,
            prediction_hypothetical(
                vehicle=car,
                starts_at=booking.scheduled_start,
                user_id=booking.user_id,
                requirement=requirement,
                now=now,
            ),
        )
        for car in vehicles_free(booking=booking, vehicle=vehicle)
    ]
    priced.sort(key=lambda pair: (-pair[1].probability_ready, -pair[1].predicted_battery, pair[0].external_id))
    return [
        {
            "vehicle_id": car.external_id,
            "zone": car.zone or None,
            "predicted_battery": p.predicted_battery,
            "confidence_interval": interval_body(p),
            "probability_ready": p.probability_ready,
        }
        for car, p in priced[: settings.READINESS_SUGGESTIONS]
    ]


def readiness_changes_enqueue(
    *,
    vehicle: Vehicle,
    predictions: Sequence[Prediction],
    bookings: dict[str, Booking],
    trigger: str,
    event: InboundEvent | None,
    present: datetime,
) -> list[CallbackOutbox]:
    """Owe Laravel a `booking.readiness_changed` for each stored prediction whose at-risk state differs from what
    Laravel was last told (a new risk only when the pick-up is within READINESS_ALERT_HOURS of `present`, the
    moment the predictions were judged from), and remember what it is told. Call inside the storing transaction,
    holding the car's lock. Costs no query when nothing changed, and nothing at all while callbacks are off
    (nothing told, nothing remembered)."""
    if not settings.ML_CALLBACK_URL:
        return []
    rows = []
    window = present + timedelta(hours=settings.READINESS_ALERT_HOURS)
    for p in predictions:
        booking = bookings.get(p.booking_external_id)
        if booking is None or booking.status != BookingStatus.SCHEDULED:
            continue
        if p.at_risk is None or p.at_risk == bool(booking.readiness_at_risk):
            continue
        if p.at_risk and p.booking_start_time > window:
            continue
        was = bool(booking.readiness_at_risk)
        suggested = swaps_suggested(booking=booking, vehicle=vehicle, prediction=p) if p.at_risk else []
        payload = {
            "booking": affected_item(p) | {"vehicle_id": vehicle.external_id, "ends_at": iso(booking.scheduled_end)},
            "at_risk": p.at_risk,
            "was_at_risk": was,
            "suggested_vehicles": suggested,
            "metadata": {"vehicle_id": vehicle.external_id, "zone": vehicle.zone or None}
            | ({"trigger_booking_id": event.booking_external_id, "event_id": event.pk} if event else {}),
        }
        row = outbox_write(
            event=READINESS_EVENT,
            body=lambda callback_id, now, payload=payload: envelope_body(
                callback_id=callback_id, event=READINESS_EVENT, occurred_at=now, triggered_by=trigger, payload=payload
            ),
            triggered_by=trigger,
            items=[(p.booking_external_id, p.pk)],
        )
        booking_readiness_told(booking=booking, at_risk=p.at_risk)
        rows += [row] if row is not None else []
    return rows
