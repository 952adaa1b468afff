"""Reads of what Laravel told us: the fleet's clock (the newest reported level) and early cancellations."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from datetime import datetime
from functools import cache as once
from functools import lru_cache

from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.db.models import Max
from django.utils import timezone

from bookings.models import BatteryReading, Booking, BookingStatus, EventType, InboundEvent, Vehicle
from common.rows import db_value, instance, instances, placeholders, select_sql

# The key it had while it was a read of predictions: a running cache keeps working across the deploy.
FLEET_CLOCK_CACHE_KEY = "predictions:fleet_clock"


def _fleet_clock_query(now: datetime) -> datetime | None:
    return BatteryReading.objects.filter(recorded_at__lte=now).aggregate(at=Max("recorded_at"))["at"]


def fleet_clock(*, now: datetime) -> datetime:
    """The newest moment any car reported its level at, never later than `now`.

    It stands for "the present" in a prediction's lead time and in no-show marking. Events carry the
    moments they describe, and a replayed or late stream (the accuracy benchmark replays two months in
    minutes) describes the past, where the server's clock would be wrong by months. With a live
    fleet it trails the server's clock by the minutes since the last report anywhere.

    Every prediction needs it, so each process keeps it for FLEET_CLOCK_CACHE_SECONDS and moves
    it forward itself with every reading it commits (`fleet_clock_observe`): a process sees its
    own readings at once and the other processes' within that time.
    """
    ttl = settings.FLEET_CLOCK_CACHE_SECONDS
    if ttl <= 0:
        return _fleet_clock_query(now) or now
    cached = cache.get(FLEET_CLOCK_CACHE_KEY)
    if cached is not None:
        at, refresh_after = cached
        if time.time() < refresh_after and at <= now:
            return at
    latest = _fleet_clock_query(now)
    if latest is not None:
        cache.set(FLEET_CLOCK_CACHE_KEY, (latest, time.time() + ttl), ttl)
    return latest or now


def fleet_clock_observe(at: datetime) -> None:
    """A reading at `at` was committed: move the cached fleet clock forward to it (keeping when it is re-read).

    Call after commit (`transaction.on_commit`): a reading rolled back must not move the clock.
    A reading stamped later than the server's clock is not "the present" and is left out, as the
    query leaves it out.
    """
    cached = cache.get(FLEET_CLOCK_CACHE_KEY)
    if cached is None:
        return  # the next fleet_clock() reads the database, which has this reading
    current, refresh_after = cached
    if current < at <= timezone.now():
        remaining = refresh_after - time.time()
        if remaining > 0:
            cache.set(FLEET_CLOCK_CACHE_KEY, (at, refresh_after), remaining)


def bookings_cancelled_before_created(*, booking_ids: Iterable[str]) -> set[str]:
    """Bookings whose cancellation arrived before we ever heard of them."""
    booking_ids = list(booking_ids)
    if not booking_ids:
        return set()
    return set(
        InboundEvent.objects.filter(event_type=EventType.CANCELLED, booking_external_id__in=booking_ids).values_list(
            "booking_external_id", flat=True
        )
    )


# --- the reads of every prediction, as SQL built once per process (common/rows.py) ------------------------------


@once
def _booking_sql() -> str:
    return select_sql(Booking, f"{connection.ops.quote_name('external_id')} = %s")


def booking_by_external_id(external_id: str) -> Booking | None:
    """The booking Laravel calls `external_id` (unique), or None."""
    return instance(Booking, _booking_sql(), [external_id])


@once
def _open_bookings_sql(bounded: bool) -> str:
    qn = connection.ops.quote_name
    where = f"{qn('vehicle_id')} = %s AND {qn('status')} IN (%s, %s)"
    if bounded:
        where += f" AND {qn('scheduled_start')} < %s AND {qn('external_id')} <> %s"
    return select_sql(Booking, where, f"{qn('scheduled_start')}, {qn('id')}")


def bookings_open_before(*, vehicle: Vehicle, before: datetime, exclude: str = "") -> list[Booking]:
    """The car's scheduled and active bookings starting before `before`, but `exclude`, by scheduled start."""
    start = db_value(Booking, "scheduled_start", before)
    params = [vehicle.pk, BookingStatus.SCHEDULED.value, BookingStatus.ACTIVE.value, start, exclude]
    return instances(Booking, _open_bookings_sql(True), params)


def bookings_open(*, vehicle: Vehicle) -> list[Booking]:
    """The car's scheduled and active bookings, by scheduled start (then id): what an event's cascade walks."""
    params = [vehicle.pk, BookingStatus.SCHEDULED.value, BookingStatus.ACTIVE.value]
    return instances(Booking, _open_bookings_sql(False), params)


@lru_cache(maxsize=64)
def _bookings_by_ids_sql(count: int) -> str:
    return select_sql(Booking, f"{connection.ops.quote_name('external_id')} IN ({placeholders(count)})")


def bookings_by_external_ids(external_ids: Sequence[str]) -> dict[str, Booking]:
    """The bookings Laravel calls `external_ids`, by that id (the unknown ones left out)."""
    ids = sorted(set(external_ids))
    if not ids:
        return {}
    return {b.external_id: b for b in instances(Booking, _bookings_by_ids_sql(len(ids)), ids)}


@once
def _stale_bookings_sql() -> str:
    qn = connection.ops.quote_name
    return (
        f"SELECT {qn('external_id')} FROM {qn(Booking._meta.db_table)} "
        f"WHERE {qn('vehicle_id')} = %s AND {qn('status')} = %s AND {qn('scheduled_start')} < %s"
    )


def bookings_scheduled_before(*, vehicle: Vehicle, before: datetime) -> list[str]:
    """The ids of the car's scheduled bookings due to start before `before` (the no-show candidates)."""
    params = [vehicle.pk, BookingStatus.SCHEDULED.value, db_value(Booking, "scheduled_start", before)]
    with connection.cursor() as cursor:
        cursor.execute(_stale_bookings_sql(), params)
        return [external_id for (external_id,) in cursor.fetchall()]
