"""Writes for what Laravel tells us: applying the five booking events idempotently, in order per car.

Every event runs in one transaction holding the vehicle's row lock, so events for one car are
serialized and a replay (same idempotency key) is answered from the stored response. Statuses
only move forward (scheduled -> active -> completed, or scheduled -> cancelled); an event that
cannot move its booking is recorded, changes nothing, and its response says why.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Q
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
from bookings.selectors import fleet_clock, fleet_clock_observe
from bookings.signals import booking_completed, schedule_changed, start_level_observed
from callbacks.services import callback_enqueue
from common.api.errors import DomainError
from common.api.fields import iso
from predictions.models import Prediction, PredictionStatus

logger = logging.getLogger(__name__)


@dataclass
class EventResult:
    """What applying one event did, for the response builder."""

    event: InboundEvent
    booking: Booking | None
    applied: bool = True
    notes: list[str] = field(default_factory=list)
    start_learning: Any = None
    observed_at: datetime | None = None  # the moment of the level this event reported, if it reported one
    predictions: list = field(default_factory=list)  # what the cascade issued, in start order


def vehicle_get_or_create(*, external_id: str) -> Vehicle:
    try:
        vehicle, _ = Vehicle.objects.get_or_create(external_id=external_id)
    except IntegrityError:  # created concurrently by another request
        vehicle = Vehicle.objects.get(external_id=external_id)
    return vehicle


def vehicle_lock(*, external_id: str, with_pattern: bool = False) -> Vehicle:
    """Return the car's row locked until the transaction ends (creating the car if new).

    Call inside `transaction.atomic()`. Every write about one car goes through this lock, so
    events for one car never interleave. `with_pattern` reads the car's learned pattern in the
    same query (only the car's row is locked), for a caller that reads the pattern but does not
    change it before predicting.
    """
    locked = Vehicle.objects.select_for_update(of=("self",))
    if with_pattern:
        locked = locked.select_related("pattern")
    try:
        return locked.get(external_id=external_id)
    except Vehicle.DoesNotExist:
        return locked.get(pk=vehicle_get_or_create(external_id=external_id).pk)


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


def _replay_by_header(*, event_type: str, key: HeaderKey, digest: str) -> InboundEvent | None:
    """The event first delivered with this key, or None; the same key with another body is refused (422).

    Like Stripe and the IETF Idempotency-Key draft: a key names one request. Applying a second body under it
    would answer with the first one's response and silently drop the second, so nothing is applied.
    """
    existing = InboundEvent.objects.filter(idempotency_key=_header_key_scoped(event_type, key)).first()
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
        return (
            InboundEvent.objects.filter(event_type=event_type, booking_external_id=booking_id)
            .filter(
                Q(body_hash=digest) | Q(body_hash="", idempotency_key=_legacy_body_key(event_type, booking_id, body))
            )
            .order_by("-id")
            .first()
        )
    newest = InboundEvent.objects.filter(vehicle=vehicle).order_by("-id").first()
    if (
        newest is not None
        and newest.event_type == event_type
        and newest.booking_external_id == booking_id
        and _stored_digest(newest) == digest
    ):
        return newest
    return None


def reading_record(
    *,
    vehicle: Vehicle,
    level: float,
    at: datetime,
    source: str,
    booking: Booking | None = None,
    charging: bool | None = None,
) -> BatteryReading:
    reading = BatteryReading.objects.create(
        vehicle=vehicle, booking=booking, level=level, recorded_at=at, source=source, charging=charging
    )
    transaction.on_commit(lambda: fleet_clock_observe(at))
    return reading


def _booking_of_vehicle(*, vehicle: Vehicle, booking_id: str) -> Booking | None:
    """The booking, refusing one that belongs to another car unless it is still only scheduled.

    A scheduled booking may be moved to another car (Laravel swaps cars before pick-up); an
    active or finished one may not, because its outcome belongs to the car that was driven.
    """
    booking = Booking.objects.filter(external_id=booking_id).first()
    if booking is None:
        return None
    if booking.vehicle_id == vehicle.pk:
        booking.vehicle = vehicle  # the locked instance: no second fetch
        return booking
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


def bookings_upsert_future(*, vehicle: Vehicle, items: Iterable[dict], exclude: str | None = None) -> list[str]:
    """Record the car's future bookings as Laravel lists them: create unknown ones, reschedule known ones.

    Only scheduled bookings change; ones already started, finished or cancelled keep their
    state (Laravel's list may lag behind). Returns notes about what was skipped.
    """
    items = [item for item in items if item["booking_id"] != exclude]
    if not items:
        return []
    notes: list[str] = []
    known = {b.external_id: b for b in Booking.objects.filter(external_id__in=[i["booking_id"] for i in items])}
    cancelled_early = _cancelled_before_created([i["booking_id"] for i in items if i["booking_id"] not in known])
    to_create, to_update = [], []
    for item in items:
        booking = known.get(item["booking_id"])
        if booking is None:
            status = BookingStatus.CANCELLED if item["booking_id"] in cancelled_early else BookingStatus.SCHEDULED
            to_create.append(
                Booking(
                    external_id=item["booking_id"],
                    vehicle=vehicle,
                    user_id=item.get("user_id") or "",
                    scheduled_start=item["starts_at"],
                    scheduled_end=item["ends_at"],
                    status=status,
                )
            )
            continue
        if booking.status not in NOT_STARTED:
            continue
        if booking.vehicle_id != vehicle.pk:
            notes.append(f"future booking {booking.external_id} moved from vehicle {booking.vehicle_id} to this car")
        changed = (booking.scheduled_start, booking.scheduled_end, booking.vehicle_id) != (
            item["starts_at"],
            item["ends_at"],
            vehicle.pk,
        )
        if changed or (item.get("user_id") and item["user_id"] != booking.user_id):
            if changed:
                booking.status = BookingStatus.SCHEDULED  # a no-show given new times is upcoming again
            booking.vehicle = vehicle
            booking.scheduled_start, booking.scheduled_end = item["starts_at"], item["ends_at"]
            booking.user_id = item.get("user_id") or booking.user_id
            booking.updated_at = timezone.now()
            to_update.append(booking)
    if to_create:
        Booking.objects.bulk_create(to_create)
    if to_update:
        Booking.objects.bulk_update(
            to_update, ["vehicle", "status", "scheduled_start", "scheduled_end", "user_id", "updated_at"]
        )
    return notes


def _cancelled_before_created(booking_ids: list[str]) -> set[str]:
    """Bookings whose cancellation arrived before we ever heard of them."""
    if not booking_ids:
        return set()
    return set(
        InboundEvent.objects.filter(event_type=EventType.CANCELLED, booking_external_id__in=booking_ids).values_list(
            "booking_external_id", flat=True
        )
    )


def _booking_create_unknown(*, vehicle: Vehicle, data: dict, start: datetime, end: datetime | None) -> Booking:
    """Create a booking first heard of through a later event (its `booking.created` was lost or late)."""
    return Booking.objects.create(
        external_id=data["booking_id"],
        vehicle=vehicle,
        user_id=data.get("user_id") or "",
        scheduled_start=start,
        scheduled_end=end,
    )


def _ignore(result: EventResult, booking: Booking, event_name: str) -> None:
    result.applied = False
    result.notes.append(f"booking is already {booking.status}; {event_name} ignored")


def _learn_start(*, booking: Booking, reading: BatteryReading) -> Any:
    results = start_level_observed.send(sender=Booking, booking=booking, reading=reading)
    return next((value for _, value in results if value is not None), None)


# --- the five events ---------------------------------------------------------------------------


def booking_create(*, vehicle: Vehicle, event: InboundEvent, data: dict) -> tuple[EventResult, datetime | None]:
    result = EventResult(event=event, booking=None)
    booking = _booking_of_vehicle(vehicle=vehicle, booking_id=data["booking_id"])
    if booking is None:
        cancelled = bool(_cancelled_before_created([data["booking_id"]]))
        booking = Booking.objects.create(
            external_id=data["booking_id"],
            vehicle=vehicle,
            user_id=data.get("user_id") or "",
            scheduled_start=data["starts_at"],
            scheduled_end=data["ends_at"],
            status=BookingStatus.CANCELLED if cancelled else BookingStatus.SCHEDULED,
            cancelled_at=timezone.now() if cancelled else None,
        )
        if cancelled:
            result.applied = False
            result.notes.append("booking was cancelled before it was created; recorded as cancelled")
    elif booking.status in NOT_STARTED:
        booking.status = BookingStatus.SCHEDULED
        booking.scheduled_start, booking.scheduled_end = data["starts_at"], data["ends_at"]
        booking.user_id = data.get("user_id") or booking.user_id
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


def _start(*, booking: Booking, vehicle: Vehicle, level: float, at: datetime) -> Any:
    """Move a scheduled booking to active at `at` with `level`, and learn from the pick-up level."""
    booking.status = BookingStatus.ACTIVE
    booking.actual_start, booking.battery_at_start = at, level
    booking.save()
    reading = reading_record(
        vehicle=vehicle, level=level, at=at, source=ReadingSource.BOOKING_STARTED, booking=booking, charging=False
    )
    return _learn_start(booking=booking, reading=reading)


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
        result.start_learning = _start(booking=booking, vehicle=vehicle, level=level, at=at)
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
            result.start_learning = _start(
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
        from predictions.services import predictions_cancel  # predictions depends on this module

        predictions_cancel(booking_id=booking.external_id)
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
    respond: Callable[[EventResult], dict],
) -> Ingested:
    """Apply one booking event exactly once and store the response that answers its replays.

    `data` is the validated body; `body` the raw JSON (stored, and hashed to recognise a replay).
    `header_key` is the platform's webhook-id or Idempotency-Key, when sent. `respond` builds the
    response inside the transaction, after the cascade, so a replay returns byte-for-byte what the
    first delivery got.
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
        if key is None:
            event = InboundEvent.objects.create(**fields)
        else:
            try:
                with transaction.atomic():  # a savepoint: the same key may be committing for another car now
                    event = InboundEvent.objects.create(**fields)
            except IntegrityError:
                existing = _replay_by_header(event_type=event_type, key=header_key, digest=digest)
                if existing is None:  # not a key clash after all: let the caller see the real error
                    raise
                return _replayed(existing, event_type, booking_id)
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
        for _, issued in schedule_changed.send(sender=Vehicle, vehicle=vehicle, pivot=pivot, event=event):
            result.predictions += issued or []
        event.applied = result.applied
        event.response = respond(result)
        event.save(update_fields=["applied", "response"])
        if result.predictions:  # also after an ignored event: its cascade still re-predicted the car's bookings
            callback_enqueue(
                predictions=result.predictions,
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


def bookings_mark_no_show(*, clock: datetime, vehicle: Vehicle) -> int:
    """Mark the car's scheduled bookings whose start passed more than NO_SHOW_GRACE_HOURS before `clock` as no-shows.

    `clock` is the fleet's clock (`bookings.selectors.fleet_clock`), not the server's: a replayed stream
    describes the past, where the server's clock would call every booking a no-show. A no-show is no longer
    predicted, so it stops dragging every later event's cascade along; a late booking.started still applies.
    Call while holding the car's lock (an event does; `bookings_mark_no_show_fleet` takes it per car), so no
    event of the car can start, move or end one of these bookings in between.
    """
    hours = settings.NO_SHOW_GRACE_HOURS
    if hours <= 0:
        return 0
    stale = Booking.objects.filter(
        vehicle=vehicle, status=BookingStatus.SCHEDULED, scheduled_start__lt=clock - timedelta(hours=hours)
    )
    ids = list(stale.values_list("external_id", flat=True))
    if not ids:
        return 0
    marked = stale.filter(external_id__in=ids).update(status=BookingStatus.NO_SHOW, updated_at=timezone.now())
    # Their predictions will not be scored unless a late pick-up comes: cancelled, so that retention may remove
    # the superseded ones.
    Prediction.objects.filter(booking_external_id__in=ids, status=PredictionStatus.PENDING).update(
        status=PredictionStatus.CANCELLED
    )
    return marked


def bookings_mark_no_show_fleet(*, clock: datetime) -> int:
    """The hourly pass over the fleet: each car with stale scheduled bookings, in its own transaction, locked."""
    hours = settings.NO_SHOW_GRACE_HOURS
    if hours <= 0:
        return 0
    cars = (
        Booking.objects.filter(status=BookingStatus.SCHEDULED, scheduled_start__lt=clock - timedelta(hours=hours))
        .values_list("vehicle__external_id", flat=True)
        .distinct()
    )
    marked = 0
    for external_id in sorted(set(cars)):
        with transaction.atomic():
            marked += bookings_mark_no_show(clock=clock, vehicle=vehicle_lock(external_id=external_id))
    return marked


def default_duration() -> timedelta:
    """Assumed length of a booking whose end Laravel has not told us."""
    return timedelta(hours=2)
