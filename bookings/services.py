"""Writes of what Laravel tells us, at the lowest app layer: cars, readings, future bookings, no-shows.

The event workflow (`events/services.py`) applies the five booking events with these, inside one
transaction holding the car's row lock (`vehicle_lock`). This app imports no other app: what the
layers above do about a change (score, learn, re-predict, cancel predictions) they do in receivers of
the signals in `bookings/signals.py`.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from functools import cache

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import F
from django.utils import timezone

from bookings.models import NOT_STARTED, BatteryReading, Booking, BookingStatus, Vehicle
from bookings.selectors import (
    bookings_by_external_ids,
    bookings_cancelled_before_created,
    bookings_scheduled_before,
    fleet_clock_observe,
)
from bookings.signals import bookings_marked_no_show
from common.rows import columns_of, insert, model_from_row


def vehicle_get_or_create(*, external_id: str) -> Vehicle:
    try:
        vehicle, _ = Vehicle.objects.get_or_create(external_id=external_id)
    except IntegrityError:  # created concurrently by another request
        vehicle = Vehicle.objects.get(external_id=external_id)
    return vehicle


def _vehicle_bumped(external_id: str) -> Vehicle | None:
    """Move the car's revision on and return its row, locked by the UPDATE (one statement, as the plain lock is).

    A raw `UPDATE ... RETURNING` (Postgres, and SQLite from 3.35) because the ORM's `update()` returns a count, and a
    second statement to read the row would cost every event a round trip. None when the car is new.
    """
    table = connection.ops.quote_name(Vehicle._meta.db_table)
    sql = f"UPDATE {table} SET revision = revision + 1 WHERE external_id = %s RETURNING *"
    return next(iter(Vehicle.objects.raw(sql, [external_id])), None)


@cache
def _locked_with_pattern_sql(bump: bool) -> str:
    """`_vehicle_locked_with_pattern`'s statement, built once per process."""
    qn = connection.ops.quote_name
    relation = Vehicle._meta.get_field("pattern")
    pattern_model = relation.related_model
    returned = columns_of(Vehicle)
    columns = f"{columns_of(Vehicle, 'v')}, {columns_of(pattern_model, 'p')}"
    car_table, pattern_table = qn(Vehicle._meta.db_table), qn(pattern_model._meta.db_table)
    joined = f"LEFT JOIN {pattern_table} p ON p.{qn(relation.field.column)} = v.{qn(Vehicle._meta.pk.column)}"
    if bump:
        return (
            f"WITH v AS (UPDATE {car_table} SET revision = revision + 1 WHERE external_id = %s RETURNING {returned}) "
            f"SELECT {columns} FROM v {joined}"
        )
    return f"SELECT {columns} FROM {car_table} v {joined} WHERE v.external_id = %s FOR UPDATE OF v"


def _vehicle_locked_with_pattern(external_id: str, *, bump: bool) -> Vehicle | None:
    """The car's row locked, its revision moved on if `bump`, and its learned pattern, in one statement: a `/predict`
    wants all three. None when the car is new.

    With `bump` the UPDATE locks the row in a CTE that the SELECT joins to the pattern; without, `FOR UPDATE OF` the
    car alone. Either way the pattern is read, not locked, and cached on the car as `select_related` caches it. SQL
    written once here rather than the ORM's `select_for_update().select_related()`, which compiled the query on
    every call: about a tenth of a predict worker's CPU (docs/performance.md). Postgres only: SQLite has neither
    UPDATE inside WITH nor FOR UPDATE.
    """
    relation = Vehicle._meta.get_field("pattern")  # the learning app's one-to-one, by name as select_related has it
    pattern_model, car_fields = relation.related_model, Vehicle._meta.concrete_fields
    sql = _locked_with_pattern_sql(bump)
    with connection.cursor() as cursor:
        cursor.execute(sql, [external_id])
        row = cursor.fetchone()
    if row is None:
        return None
    vehicle = model_from_row(Vehicle, row[: len(car_fields)])
    pattern_values = row[len(car_fields) :]
    pattern = None if pattern_values[0] is None else model_from_row(pattern_model, pattern_values)
    relation.set_cached_value(vehicle, pattern)
    if pattern is not None:
        relation.field.set_cached_value(pattern, vehicle)
    return vehicle


def vehicle_lock(*, external_id: str, with_pattern: bool = False, changes: bool = True) -> Vehicle:
    """Return the car's row locked until the transaction ends (creating the car if new).

    Call inside `transaction.atomic()`. Every write about one car goes through this lock, so
    events for one car never interleave. `with_pattern` reads the car's learned pattern in the
    same query (only the car's row is locked), for a caller that reads the pattern but does not
    change it before predicting.

    `changes` (the default) counts the lock as a change of what the car's predictions start from: the car's
    `revision` moves on (the UPDATE takes the row lock), so no prediction stored before is answered again
    (`predictions.reuse`). Only a caller that changes none of the car's readings, bookings or pattern (a
    historical `/predict`) passes False; a wrong False would serve a stale prediction for PREDICTION_REUSE_SECONDS.
    """
    if changes and not with_pattern:
        bumped = _vehicle_bumped(external_id)
        if bumped is not None:
            return bumped
    elif with_pattern and connection.vendor == "postgresql":
        locked = _vehicle_locked_with_pattern(external_id, bump=changes)
        if locked is not None:
            return locked
    elif changes:  # the row is read again below, with the pattern
        Vehicle.objects.filter(external_id=external_id).update(revision=F("revision") + 1)
    locked = Vehicle.objects.select_for_update(of=("self",))
    if with_pattern:
        locked = locked.select_related("pattern")
    try:
        return locked.get(external_id=external_id)
    except Vehicle.DoesNotExist:
        return locked.get(pk=vehicle_get_or_create(external_id=external_id).pk)


def reading_record(
    *,
    vehicle: Vehicle,
    level: float,
    at: datetime,
    source: str,
    booking: Booking | None = None,
    charging: bool | None = None,
) -> BatteryReading:
    # Every real-time predict and most events record one: inserted with SQL built once (`common.rows.insert`).
    reading = BatteryReading(
        vehicle=vehicle, booking=booking, level=level, recorded_at=at, source=source, charging=charging
    )
    insert(BatteryReading, [reading])
    transaction.on_commit(lambda: fleet_clock_observe(at))
    return reading


def bookings_upsert_future(*, vehicle: Vehicle, items: Iterable[dict], exclude: str | None = None) -> list[str]:
    """Record the car's future bookings as Laravel lists them: create unknown ones, reschedule known ones.

    Only scheduled bookings change; ones already started, finished or cancelled keep their
    state (Laravel's list may lag behind). Returns notes about what was skipped.
    """
    items = [item for item in items if item["booking_id"] != exclude]
    if not items:
        return []
    notes: list[str] = []
    known = bookings_by_external_ids([i["booking_id"] for i in items])
    cancelled_early = bookings_cancelled_before_created(
        booking_ids=[i["booking_id"] for i in items if i["booking_id"] not in known]
    )
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
    ids = bookings_scheduled_before(vehicle=vehicle, before=clock - timedelta(hours=hours))  # every event asks
    if not ids:
        return 0
    # The car's lock is held, so these are still scheduled and still due: only their ids need naming.
    stale = Booking.objects.filter(vehicle=vehicle, status=BookingStatus.SCHEDULED, external_id__in=ids)
    marked = stale.update(status=BookingStatus.NO_SHOW, updated_at=timezone.now())
    # Their predictions will not be scored unless a late pick-up comes: the predictions app cancels them, so that
    # retention may remove the superseded ones.
    bookings_marked_no_show.send(sender=Booking, booking_ids=ids)
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


def booking_readiness_told(*, booking: Booking, at_risk: bool) -> None:
    """Remember whether Laravel was last told the booking is at risk (`booking.readiness_changed`), so that only a
    change is told again. Call inside the transaction that writes the callback, holding the car's lock."""
    Booking.objects.filter(pk=booking.pk).update(readiness_at_risk=at_risk)
    booking.readiness_at_risk = at_risk


def booking_readiness_untold(*, booking_id: str, told: bool, was: bool) -> None:
    """A readiness callback that said `told` never reached Laravel: put back `was`, unless a newer one has moved
    the state since."""
    Booking.objects.filter(external_id=booking_id, readiness_at_risk=told).update(readiness_at_risk=was)


def default_duration() -> timedelta:
    """Assumed length of a booking whose end Laravel has not told us."""
    return timedelta(hours=2)
