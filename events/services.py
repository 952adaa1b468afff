"""The event workflow: applying the five booking events idempotently, in order per car.

Every event runs in one transaction holding the vehicle's row lock, so events for one car are
serialized and a replay (same idempotency key) is answered from the stored response. Statuses
only move forward (scheduled -> active -> completed, or scheduled -> cancelled); an event that
cannot move its booking is recorded, changes nothing, and its response says why.

The handlers move the booking with the bookings services and send the bookings signals; the
learning and predictions receivers score, learn and re-predict. The response is then read from
what they stored (`events/responses.py`), never from what a receiver returned.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache as once
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.db.models import F
from django.utils import timezone

from bookings.models import (
    NOT_STARTED,
    BatteryReading,
    Booking,
    BookingStatus,
    EventType,
    InboundEvent,
    ReadingSource,
    Vehicle,
)
from bookings.selectors import booking_by_external_id, bookings_cancelled_before_created, fleet_clock
from bookings.services import bookings_mark_no_show, bookings_upsert_future, reading_record, vehicle_lock
from bookings.signals import booking_completed, schedule_changed, start_level_observed
from callbacks.services import callback_enqueue
from common.api.errors import DomainError
from common.api.fields import iso
from common.rows import insert, instance, select_sql
from events.responses import StartLearned, event_response, start_learned
from learning.selectors import pattern_pickup_lessons
from predictions.selectors import predictions_issued_by
from predictions.services import predictions_cancel

logger = logging.getLogger(__name__)


@dataclass
class EventResult:
    """What applying one event did to the booking, for the response builder."""

    event: InboundEvent
    booking: Booking | None
    applied: bool = True
    notes: list[str] = field(default_factory=list)
    start: StartLearned | None = None  # set when this event reported the pick-up level for the first time
    observed_at: datetime | None = None  # the moment of the level this event reported, if it reported one


def _canonical(body: Any) -> str:
    """The body as compact JSON with sorted keys: key order and spacing do not change it."""
    return json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)


def body_digest(body: Any) -> str:
    """SHA-256 of the body's canonical JSON: the same event sent twice hashes the same."""
    return hashlib.sha256(_canonical(body).encode()).hexdigest()


def _stored_digest(event: InboundEvent) -> str:
    """The event's body hash; rows stored before `body_hash` existed are hashed from their body, and when retention
    has emptied that body too, the hash is unknown ("")."""
    if event.body_hash:
        return event.body_hash
    return body_digest(event.body) if event.body is not None else ""


@dataclass(frozen=True)
class HeaderKey:
    """The platform's own idempotency key and the header it came in (for the error that names it)."""

    value: str
    header: str


def _header_key_scoped(event_type: str, key: HeaderKey) -> str:
    return f"{event_type}:hdr:{key.value}"


# Every event asks one of these (SQL built once: the ORM compiled them on every event).
@once
def _keyed_sql() -> str:
    return select_sql(InboundEvent, f"{connection.ops.quote_name('idempotency_key')} = %s")


@once
def _same_body_sql() -> str:
    qn = connection.ops.quote_name
    where = (
        f"{qn('event_type')} = %s AND {qn('booking_external_id')} = %s "
        f"AND ({qn('body_hash')} = %s OR ({qn('body_hash')} = '' AND {qn('idempotency_key')} = %s))"
    )
    return select_sql(InboundEvent, where, f"{qn('id')} DESC") + " LIMIT 1"


@once
def _newest_of_car_sql() -> str:
    qn = connection.ops.quote_name
    return select_sql(InboundEvent, f"{qn('vehicle_id')} = %s", f"{qn('id')} DESC") + " LIMIT 1"


def _replay_by_header(*, event_type: str, key: HeaderKey, digest: str) -> InboundEvent | None:
    """The event first delivered with this key, or None; the same key with another body is refused (422).

    Like Stripe and the IETF Idempotency-Key draft: a key names one request. Applying a second body under it
    would answer with the first one's response and silently drop the second, so nothing is applied.
    """
    existing = instance(InboundEvent, _keyed_sql(), [_header_key_scoped(event_type, key)])
    if existing is None:
        return None
    stored = _stored_digest(existing)
    if stored and stored != digest:  # unknown (an old row whose body retention emptied): taken as the same
        raise DomainError(
            f"{key.header} {key.value!r} was already used for a {event_type} event with another body "
            f"(booking {existing.booking_external_id}); send a new key for a new event.",
            field=key.header,
            code="idempotency_key_reused",
            status_code=422,
        )
    return existing


def _legacy_body_key(event_type: str, booking_id: str, body: Any) -> str:
    """The key events without a header were stored under before `body_hash` existed (still matched)."""
    digest = hashlib.sha256(f"{event_type}|{booking_id}|{_canonical(body)}".encode()).hexdigest()
    return f"{event_type}:body:{digest}"


def _replay_by_body(
    *, vehicle: Vehicle, event_type: str, booking_id: str, body: Any, digest: str
) -> InboundEvent | None:
    """Without a header key: the earlier delivery this identical body repeats, if it is a replay.

    `booking.created`, `.started`, `.ended` and `.cancelled` happen once per booking, so the same body for the
    same booking again can only be a retry, however late: it is always answered from the store (a late retry of
    `created` must not put back times a later `modified` changed). `booking.modified` may legitimately repeat
    (to 10:00, to 11:00, back to 10:00): it is a replay only while it is still the car's newest event, and
    applied again otherwise. Applying is always safe for learning, because statuses only move forward.
    """
    if event_type != EventType.MODIFIED:
        legacy = _legacy_body_key(event_type, booking_id, body)
        return instance(InboundEvent, _same_body_sql(), [event_type, booking_id, digest, legacy])
    newest = instance(InboundEvent, _newest_of_car_sql(), [vehicle.pk])
    if (
        newest is not None
        and newest.event_type == event_type
        and newest.booking_external_id == booking_id
        and _stored_digest(newest) == digest
    ):
        return newest
    return None


def _booking_of_vehicle(*, vehicle: Vehicle, booking_id: str) -> Booking | None:
    """The booking, refusing one that belongs to another car unless it is still only scheduled.

    A scheduled booking may be moved to another car (Laravel swaps cars before pick-up); an
    active or finished one may not, because its outcome belongs to the car that was driven.
    """
    booking = booking_by_external_id(booking_id)
    if booking is None:
        return None
    if booking.vehicle_id == vehicle.pk:
        booking.vehicle = vehicle  # the locked instance: no second fetch
        return booking
    # Another car's booking: read it again locked, so that what that car's own events (holding its lock, not
    # this one's) wrote to it meanwhile, such as what Laravel was last told of its readiness, is not saved over.
    booking = Booking.objects.select_for_update(of=("self",)).get(pk=booking.pk)
    if booking.status not in NOT_STARTED:
        raise DomainError(
            f"booking {booking_id} is {booking.status} on vehicle {booking.vehicle.external_id}, "
            f"not on vehicle {vehicle.external_id}.",
            field="vehicle_id",
            code="vehicle_mismatch",
            status_code=409,
        )
    booking.vehicle = vehicle
    return booking


def _booking_create_unknown(*, vehicle: Vehicle, data: dict, start: datetime, end: datetime | None) -> Booking:
    """Create a booking first heard of through a later event (its `booking.created` was lost or late)."""
    return Booking.objects.create(
        external_id=data["booking_id"],
        vehicle=vehicle,
        user_id=data.get("user_id") or "",
        scheduled_start=start,
        scheduled_end=end,
        required_battery=data.get("required_battery"),
        planned_distance_km=data.get("planned_distance_km"),
    )


def _need_stated(booking: Booking, data: dict) -> None:
    """Keep what the booking needs at pick-up (readiness) as this event states it: either figure replaces the stored
    need (the serializer refuses both), neither keeps it. The caller saves the booking."""
    level, distance = data.get("required_battery"), data.get("planned_distance_km")
    if level is not None or distance is not None:
        booking.required_battery, booking.planned_distance_km = level, distance


def _ignore(result: EventResult, booking: Booking, event_name: str) -> None:
    result.applied = False
    result.notes.append(f"booking is already {booking.status}; {event_name} ignored")


# --- the five events ---------------------------------------------------------------------------


def booking_create(*, vehicle: Vehicle, event: InboundEvent, data: dict) -> tuple[EventResult, datetime | None]:
    result = EventResult(event=event, booking=None)
    booking = _booking_of_vehicle(vehicle=vehicle, booking_id=data["booking_id"])
    if booking is None:
        cancelled = bool(bookings_cancelled_before_created(booking_ids=[data["booking_id"]]))
        booking = Booking.objects.create(
            external_id=data["booking_id"],
            vehicle=vehicle,
            user_id=data.get("user_id") or "",
            scheduled_start=data["starts_at"],
            scheduled_end=data["ends_at"],
            status=BookingStatus.CANCELLED if cancelled else BookingStatus.SCHEDULED,
            cancelled_at=timezone.now() if cancelled else None,
            required_battery=data.get("required_battery"),
            planned_distance_km=data.get("planned_distance_km"),
        )
        if cancelled:
            result.applied = False
            result.notes.append("booking was cancelled before it was created; recorded as cancelled")
    elif booking.status in NOT_STARTED:
        booking.status = BookingStatus.SCHEDULED
        booking.scheduled_start, booking.scheduled_end = data["starts_at"], data["ends_at"]
        booking.user_id = data.get("user_id") or booking.user_id
        _need_stated(booking, data)
        booking.save()
        result.notes.append("booking already known; its schedule was updated")
    else:
        _ignore(result, booking, "booking.created")
    result.booking = booking
    if data.get("current_battery_level") is not None:
        result.observed_at = data.get("current_timestamp") or timezone.now()
        reading_record(
            vehicle=vehicle,
            level=data["current_battery_level"],
            at=result.observed_at,
            source=ReadingSource.BOOKING_CREATED,
        )
    pivot = booking.scheduled_start if result.applied else None
    return result, pivot


def _start(*, booking: Booking, vehicle: Vehicle, level: float, at: datetime) -> StartLearned:
    """Move a scheduled booking to active at `at` with `level`, and have the pick-up level scored and learned from.

    Returns what the receivers stored about it (the prediction's error, whether the car's pattern moved).
    """
    booking.status = BookingStatus.ACTIVE
    booking.actual_start, booking.battery_at_start = at, level
    booking.save()
    reading: BatteryReading = reading_record(
        vehicle=vehicle, level=level, at=at, source=ReadingSource.BOOKING_STARTED, booking=booking, charging=False
    )
    lessons = pattern_pickup_lessons(vehicle=vehicle)
    start_level_observed.send(sender=Booking, booking=booking, reading=reading)
    return start_learned(booking=booking, lessons_before=lessons)


def booking_start(*, vehicle: Vehicle, event: InboundEvent, data: dict) -> tuple[EventResult, datetime | None]:
    result = EventResult(event=event, booking=None)
    booking = _booking_of_vehicle(vehicle=vehicle, booking_id=data["booking_id"])
    at, level = data["actual_started_at"], data["actual_battery_at_start"]
    if booking is None:
        booking = _booking_create_unknown(vehicle=vehicle, data=data, start=at, end=data.get("ends_at"))
        result.notes.append("booking was not known; created from booking.started")
    if booking.status in NOT_STARTED:
        if booking.status == BookingStatus.NO_SHOW:
            result.notes.append("booking was marked no-show; the late pick-up is applied")
        if data.get("user_id"):
            booking.user_id = data["user_id"]
        result.start = _start(booking=booking, vehicle=vehicle, level=level, at=at)
        result.observed_at = at
    else:
        _ignore(result, booking, "booking.started")
    result.booking = booking
    return result, None


def booking_end(*, vehicle: Vehicle, event: InboundEvent, data: dict) -> tuple[EventResult, datetime | None]:
    result = EventResult(event=event, booking=None)
    booking = _booking_of_vehicle(vehicle=vehicle, booking_id=data["booking_id"])
    if booking is None:
        booking = _booking_create_unknown(vehicle=vehicle, data=data, start=data["starts_at"], end=data["ends_at"])
        result.notes.append("booking was not known; created from booking.ended")
    result.booking = booking
    if booking.status in (BookingStatus.COMPLETED, BookingStatus.CANCELLED):
        _ignore(result, booking, "booking.ended")
    else:
        if booking.status in NOT_STARTED:
            result.notes.append("booking.started was never received; start taken from booking.ended")
            result.start = _start(
                booking=booking, vehicle=vehicle, level=data["battery_at_start"], at=data["starts_at"]
            )
        if data.get("user_id"):
            booking.user_id = data["user_id"]
        booking.status = BookingStatus.COMPLETED
        booking.actual_end = max(data["ends_at"], booking.actual_start)
        booking.battery_at_end = data["battery_at_end"]
        booking.mileage_at_start = data.get("mileage_at_start")
        booking.mileage_at_end = data.get("mileage_at_end")
        booking.charging_at_end = bool(data.get("charging_at_end"))
        booking.save()
        result.observed_at = booking.actual_end
        reading_record(
            vehicle=vehicle,
            level=data["battery_at_end"],
            at=booking.actual_end,
            source=ReadingSource.BOOKING_ENDED,
            booking=booking,
            charging=booking.charging_at_end,
        )
        booking_completed.send(sender=Booking, booking=booking, battery_at_start=data["battery_at_start"])
    return result, None


def booking_modify(*, vehicle: Vehicle, event: InboundEvent, data: dict) -> tuple[EventResult, datetime | None]:
    result = EventResult(event=event, booking=None)
    booking = _booking_of_vehicle(vehicle=vehicle, booking_id=data["booking_id"])
    new_start, new_end = data["new_starts_at"], data["new_ends_at"]
    pivot: datetime | None = None
    if booking is None:
        booking = _booking_create_unknown(vehicle=vehicle, data=data, start=new_start, end=new_end)
        result.notes.append("booking was not known; created from booking.modified")
        pivot = new_start
    elif booking.status in NOT_STARTED:
        pivot = min(booking.scheduled_start, new_start)
        booking.status = BookingStatus.SCHEDULED
        booking.scheduled_start, booking.scheduled_end = new_start, new_end
        booking.user_id = data.get("user_id") or booking.user_id
        _need_stated(booking, data)
        booking.save()
    elif booking.status == BookingStatus.ACTIVE:
        if new_end <= booking.actual_start:
            raise DomainError("new_ends_at must be after the booking's actual start.", field="new_ends_at")
        if new_end <= booking.scheduled_start:  # started early, now ending before its booked start
            raise DomainError(
                f"new_ends_at must be after the booking's scheduled start ({iso(booking.scheduled_start)}); "
                "report an early return with booking.ended.",
                field="new_ends_at",
            )
        booking.scheduled_end = new_end
        booking.save()
        result.notes.append("booking is active; only its end was changed")
    else:
        _ignore(result, booking, "booking.modified")
    result.booking = booking
    return result, pivot


def booking_cancel(*, vehicle: Vehicle, event: InboundEvent, data: dict) -> tuple[EventResult, datetime | None]:
    result = EventResult(event=event, booking=None)
    booking = _booking_of_vehicle(vehicle=vehicle, booking_id=data["booking_id"])
    pivot: datetime | None = None
    if booking is None:
        result.applied = False
        result.notes.append("booking was not known; a later booking.created will record it as cancelled")
    elif booking.status in NOT_STARTED:
        booking.status, booking.cancelled_at = BookingStatus.CANCELLED, timezone.now()
        booking.save()
        predictions_cancel(booking_ids=[booking.external_id])
        pivot = booking.scheduled_start
    else:
        _ignore(result, booking, "booking.cancelled")
    result.booking = booking
    return result, pivot


Handler = Callable[..., tuple[EventResult, datetime | None]]
HANDLERS: dict[str, Handler] = {
    EventType.CREATED: booking_create,
    EventType.STARTED: booking_start,
    EventType.ENDED: booking_end,
    EventType.MODIFIED: booking_modify,
    EventType.CANCELLED: booking_cancel,
}


@dataclass
class Ingested:
    event: InboundEvent
    replayed: bool


def _replayed(event: InboundEvent, event_type: str, booking_id: str) -> Ingested:
    InboundEvent.objects.filter(pk=event.pk).update(duplicates=F("duplicates") + 1)
    logger.info("replayed %s for booking %s (event %s)", event_type, booking_id, event.pk)
    return Ingested(event=event, replayed=True)


def event_ingest(
    *,
    event_type: str,
    data: dict,
    body: Any,
    header_key: HeaderKey | None,
) -> Ingested:
    """Apply one booking event exactly once and store the response that answers its replays.

    `data` is the validated body; `body` the raw JSON (stored, and hashed to recognise a replay).
    `header_key` is the platform's webhook-id or Idempotency-Key, when sent. The response is built
    inside the transaction, after the cascade, from what was stored, so a replay returns
    byte-for-byte what the first delivery got.
    """
    booking_id = data["booking_id"]
    digest = body_digest(body)
    key = _header_key_scoped(event_type, header_key) if header_key else None
    with transaction.atomic():
        vehicle = vehicle_lock(external_id=data["vehicle_id"])
        if header_key:
            existing = _replay_by_header(event_type=event_type, key=header_key, digest=digest)
        else:
            existing = _replay_by_body(
                vehicle=vehicle, event_type=event_type, booking_id=booking_id, body=body, digest=digest
            )
        if existing is not None:
            return _replayed(existing, event_type, booking_id)
        fields = {
            "event_type": event_type,
            "booking_external_id": booking_id,
            "vehicle": vehicle,
            "idempotency_key": key,
            "body_hash": digest,
            "body": body,
        }
        event = InboundEvent(**fields)
        if key is None:
            insert(InboundEvent, [event])
        else:
            try:
                with transaction.atomic():  # a savepoint: the same key may be committing for another car now
                    insert(InboundEvent, [event])
            except IntegrityError:
                existing = _replay_by_header(event_type=event_type, key=header_key, digest=digest)
                if existing is None:  # not a key clash after all: let the caller see the real error
                    raise
                return _replayed(existing, event_type, booking_id)
        if "zone" in data and data["zone"] != vehicle.zone:
            vehicle.zone = data["zone"]
            Vehicle.objects.filter(pk=vehicle.pk).update(zone=vehicle.zone)
        result, pivot = HANDLERS[event_type](vehicle=vehicle, event=event, data=data)
        result.notes += bookings_upsert_future(
            vehicle=vehicle, items=data.get("future_bookings", []), exclude=booking_id
        )
        now = timezone.now()
        clock = fleet_clock(now=now)
        if result.observed_at is not None:  # this event's own level is news too (the cache learns it at commit)
            clock = max(clock, min(result.observed_at, now))
        marked = bookings_mark_no_show(vehicle=vehicle, clock=clock)
        if marked:
            result.notes.append(f"{marked} booking(s) of this car not picked up within the grace marked no-show")
        schedule_changed.send(sender=Vehicle, vehicle=vehicle, pivot=pivot, event=event)
        issued = predictions_issued_by(event=event)
        event.applied = result.applied
        event.response = event_response(
            event=event,
            booking=result.booking,
            applied=result.applied,
            notes=result.notes,
            start=result.start,
            issued=issued,
        )
        event.save(update_fields=["applied", "response"])
        if issued:  # also after an ignored event: its cascade still re-predicted the car's bookings
            callback_enqueue(
                predictions=issued,
                triggered_by=event_type,
                metadata={
                    "vehicle_id": vehicle.external_id,
                    "trigger_booking_id": booking_id,
                    "event_id": event.pk,
                },
            )
    logger.info(
        "applied %s for booking %s on vehicle %s: %s",
        event_type,
        booking_id,
        data["vehicle_id"],
        "; ".join(result.notes) or "ok",
    )
    return Ingested(event=event, replayed=False)
