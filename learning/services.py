"""Writes of learning: outcomes and the per-car and per-renter EMA patterns.

All of these run inside a booking event's transaction while the vehicle row is locked, so a
car's pattern is read-modified-written without lost updates; a renter's pattern is locked too
(renters move between cars). Each outcome and each pick-up level is learned from once: the
outcome row is unique per booking and the pick-up level is learned only when the booking first
becomes active.
"""

from __future__ import annotations

import logging
from functools import cache as once

from django.db import connection

from bookings.models import BatteryReading, Booking, ReadingSource, Vehicle
from common.rows import db_value, instance, select_sql
from core.ema import (
    BASELINE_ALPHA,
    FOUND_CHARGED_GAIN,
    MIN_GAP_HOURS,
    charging_gap_learned,
    ema_update,
)
from learning.models import BookingOutcome, UserPattern, VehiclePattern
from learning.selectors import vehicle_pattern_stored

logger = logging.getLogger(__name__)

ERROR_CORRECTION_THRESHOLD = 5.0  # points: the seed's rule
ERROR_CORRECTION_SHARE = 0.2  # adjust the rate by 20 % of the error
SPREAD_WIDENING = 1.1  # widen the spread by 10 % (the variance by 1.21)
MIN_TRIP_HOURS = 0.1
MIN_TRIP_KM = 0.5


def vehicle_pattern_for_update(*, vehicle: Vehicle) -> VehiclePattern:
    """The car's pattern row, created on first use. Call while holding the vehicle lock: it serializes the writes of
    this row, so the row is read as stored (SQL built once) and created only when there is none.

    The row is not attached to `vehicle` (`vehicle.pattern`): what a caller changes and does not save must not
    reach the cascade, which reads the car's pattern from the car it was given (`vehicle_pattern_for`)."""
    pattern = vehicle_pattern_stored(vehicle_id=vehicle.pk)
    if pattern is None:
        pattern, _ = VehiclePattern.objects.get_or_create(vehicle=vehicle)
    return pattern


def user_pattern_for_update(*, user_id: str) -> UserPattern:
    """The renter's pattern row, locked until the transaction ends (one query once the renter is known).

    A row created concurrently for another car's event makes the insert fail; get_or_create then
    reads (and locks) that row.
    """
    pattern, _ = UserPattern.objects.select_for_update().get_or_create(user_id=user_id)
    return pattern


def _learn_gap(pattern: VehiclePattern, *, start: float, end: float, hours: float, charging: bool | None) -> str | None:
    """Learn the idle drain or the charging rate from a parked gap; return which rate was updated.

    A charging gap teaches the car's charge ceiling (a charge limit) before its rate, as the model's features learn
    it (`core.ema.charging_gap_learned`).
    """
    if charging:
        pattern.charge_ceiling, pattern.ceiling_candidate, rate = charging_gap_learned(
            pattern.charge_ceiling,
            pattern.ceiling_candidate,
            start_level=start,
            end_level=end,
            hours=hours,
            rate=pattern.avg_charging_rate_per_hour,
        )
        if rate is None:
            return None
        pattern.avg_charging_rate_per_hour, pattern.var_charging_rate_per_hour = ema_update(
            pattern.avg_charging_rate_per_hour, pattern.var_charging_rate_per_hour, rate
        )
        pattern.charge_observations += 1
        return "charge"
    if end - start > FOUND_CHARGED_GAIN:
        pattern.unreported_charges += 1
        return None
    rate = (start - end) / hours
    pattern.avg_idle_drain_per_hour, pattern.var_idle_drain_per_hour = ema_update(
        pattern.avg_idle_drain_per_hour, pattern.var_idle_drain_per_hour, rate
    )
    # The long-run drain is the plain mean of the first gaps (alpha 1/n), then a slow EMA: an EMA started
    # at the first gap would keep most of that one gap's weight for dozens of gaps.
    pattern.baseline_idle_observations += 1
    pattern.baseline_idle_drain_per_hour, pattern.baseline_var_idle_drain_per_hour = ema_update(
        pattern.baseline_idle_drain_per_hour,
        pattern.baseline_var_idle_drain_per_hour,
        rate,
        alpha=max(BASELINE_ALPHA, 1 / pattern.baseline_idle_observations),
    )
    pattern.idle_observations += 1
    return "idle"


def _trip_between(*, vehicle: Vehicle, after, before, exclude: Booking) -> bool:
    """Whether another booking of the car was picked up strictly between `after` and `before` (SQL built once, as the
    pick-up's other reads)."""
    times = [db_value(Booking, "actual_start", moment) for moment in (after, before)]
    with connection.cursor() as cursor:
        cursor.execute(_trip_between_sql(), [vehicle.pk, *times, exclude.pk])
        return cursor.fetchone() is not None


@once
def _trip_between_sql() -> str:
    qn = connection.ops.quote_name
    start = qn("actual_start")
    return (
        f"SELECT 1 FROM {qn(Booking._meta.db_table)} WHERE {qn('vehicle_id')} = %s AND {start} > %s "
        f"AND {start} < %s AND NOT ({qn('id')} = %s) LIMIT 1"
    )


def _return_before(reading: BatteryReading) -> BatteryReading | None:
    """The car's last return before `reading`: where the parked gap that ends at this pick-up began."""
    at = db_value(BatteryReading, "recorded_at", reading.recorded_at)
    return instance(BatteryReading, _return_before_sql(), [reading.vehicle_id, at, ReadingSource.BOOKING_ENDED])


@once
def _return_before_sql() -> str:
    qn = connection.ops.quote_name
    where = f"{qn('vehicle_id')} = %s AND {qn('recorded_at')} < %s AND {qn('source')} = %s"
    return select_sql(BatteryReading, where, f"{qn('recorded_at')} DESC, {qn('id')} DESC") + " LIMIT 1"


def _hours_since_previous(reading: BatteryReading) -> float | None:
    """Hours since the car's level was last reported before `reading`, whatever reported it."""
    previous = (
        BatteryReading.objects.filter(vehicle_id=reading.vehicle_id, recorded_at__lt=reading.recorded_at)
        .order_by("-recorded_at", "-id")
        .first()
    )
    return None if previous is None else (reading.recorded_at - previous.recorded_at).total_seconds() / 3600.0


def _unrated(pattern: VehiclePattern) -> tuple:
    """What a parked gap can teach the car's pattern without learning a rate."""
    return pattern.charge_ceiling, pattern.ceiling_candidate, pattern.unreported_charges


def pattern_learn_from_start(*, booking: Booking, reading: BatteryReading, error: float | None) -> bool:
    """Learn from the parked gap that ended at pick-up; `error` is the booking's current prediction's (actual minus
    predicted, as scoring stored it; None when it had none). Returns whether the car's pattern changed.

    A clean gap (from the car's last return, no trip between) updates the idle drain or, if the car
    was left plugged in, the charging rate by EMA. Levels reported inside the gap (telematics on a
    booking's creation, a real-time `/predict`) do not break it: the gap is the return to the pick-up,
    as the model's features learn it (`core.features.FeatureBook`). Requiring the return to be the
    very last reading left most gaps unlearned wherever the platform reports levels between
    bookings, and the charging rate stuck near the fleet's default. The seed's error
    correction (error over 5 points: move the rate by 20 % of the error, widen its spread by
    10 %) then applies; when the gap was clean the EMA has already moved the rate by 30 % of the
    same evidence, so only the spread is widened, never the rate corrected twice.
    """
    vehicle = booking.vehicle
    pattern = vehicle_pattern_for_update(vehicle=vehicle)
    # A charging gap that stopped at the car's limit teaches the limit and no rate, and a gap found charged counts
    # an unreported charge: those change the row without learning a rate, and are saved all the same.
    unrated = _unrated(pattern)
    learned: str | None = None
    returned = _return_before(reading)
    if returned is not None:
        gap_hours = (reading.recorded_at - returned.recorded_at).total_seconds() / 3600.0
        clean = gap_hours >= MIN_GAP_HOURS and not _trip_between(
            vehicle=vehicle, after=returned.recorded_at, before=reading.recorded_at, exclude=booking
        )
        if clean:
            learned = _learn_gap(
                pattern, start=returned.level, end=reading.level, hours=gap_hours, charging=returned.charging
            )
    corrected = False
    if error is not None and abs(error) > ERROR_CORRECTION_THRESHOLD:
        corrected = True
        pattern.error_corrections += 1
        if learned == "charge":
            pattern.var_charging_rate_per_hour *= SPREAD_WIDENING**2
        else:
            hours = _hours_since_previous(reading) if learned is None else None  # read only when it corrects
            if hours is not None and hours >= MIN_GAP_HOURS:
                # Predicted too high (negative error) means the car drains faster than we thought.
                current = pattern.avg_idle_drain_per_hour
                base = current if current is not None else 0.0
                pattern.avg_idle_drain_per_hour = max(0.0, base - ERROR_CORRECTION_SHARE * error / hours)
            pattern.var_idle_drain_per_hour = max(pattern.var_idle_drain_per_hour, 0.01) * SPREAD_WIDENING**2
    if learned or corrected or unrated != _unrated(pattern):
        pattern.save()
    logger.info(
        "pick-up of %s: error %s, gap learned %s, corrected %s",
        booking.external_id,
        None if error is None else round(error, 2),
        learned,
        corrected,
    )
    return bool(learned or corrected)


def outcome_fields(*, booking: Booking, battery_at_start: float) -> dict:
    """A finished booking's outcome row: drain per hour only for a real trip, per km only over MIN_TRIP_KM."""
    hours = (booking.actual_end - booking.actual_start).total_seconds() / 3600.0
    drain = battery_at_start - booking.battery_at_end
    distance = None
    if booking.mileage_at_start is not None and booking.mileage_at_end is not None:
        distance = booking.mileage_at_end - booking.mileage_at_start
    driven = drain >= 0 and hours >= MIN_TRIP_HOURS
    return {
        "vehicle": booking.vehicle,
        "user_id": booking.user_id,
        "starts_at": booking.actual_start,
        "ends_at": booking.actual_end,
        "duration_hours": hours,
        "battery_at_start": battery_at_start,
        "battery_at_end": booking.battery_at_end,
        "battery_drain": drain,
        "charging_at_end": bool(booking.charging_at_end),
        "distance_km": distance,
        "drain_rate_per_hour": drain / hours if driven else None,
        "drain_rate_per_km": drain / distance if driven and distance and distance >= MIN_TRIP_KM else None,
    }


def outcome_record(*, booking: Booking, battery_at_start: float) -> BookingOutcome:
    """Record the finished booking once (unique per booking); its post_save teaches the patterns."""
    fields = outcome_fields(booking=booking, battery_at_start=battery_at_start)
    outcome, _ = BookingOutcome.objects.get_or_create(booking=booking, defaults=fields)
    return outcome


def patterns_learn_from_outcome(*, outcome: BookingOutcome) -> None:
    """Update the car's and the renter's patterns from one new outcome (EMA, alpha 0.3)."""
    pattern = vehicle_pattern_for_update(vehicle=outcome.vehicle)
    pattern.total_bookings += 1
    pattern.total_charges += int(outcome.charging_at_end)
    pattern.charging_frequency = pattern.total_charges / pattern.total_bookings
    if outcome.drain_rate_per_hour is not None:
        pattern.avg_drain_rate_per_hour, pattern.var_drain_rate_per_hour = ema_update(
            pattern.avg_drain_rate_per_hour, pattern.var_drain_rate_per_hour, outcome.drain_rate_per_hour
        )
        pattern.drive_observations += 1
    if outcome.drain_rate_per_km is not None:
        pattern.avg_drain_rate_per_km, pattern.var_drain_rate_per_km = ema_update(
            pattern.avg_drain_rate_per_km, pattern.var_drain_rate_per_km, outcome.drain_rate_per_km
        )
        pattern.km_observations += 1
    pattern.save()
    if not outcome.user_id:
        return
    user = user_pattern_for_update(user_id=outcome.user_id)
    user.total_bookings += 1
    user.total_charges += int(outcome.charging_at_end)
    user.charging_frequency = user.total_charges / user.total_bookings
    user.avg_return_battery, _ = ema_update(user.avg_return_battery, 0.0, outcome.battery_at_end)
    user.avg_duration_hours, _ = ema_update(user.avg_duration_hours, 0.0, outcome.duration_hours)
    if outcome.drain_rate_per_hour is not None:
        user.avg_drain_rate_per_hour, user.var_drain_rate_per_hour = ema_update(
            user.avg_drain_rate_per_hour, user.var_drain_rate_per_hour, outcome.drain_rate_per_hour
        )
        user.drive_observations += 1
    if outcome.drain_rate_per_km is not None:
        user.avg_drain_rate_per_km, user.var_drain_rate_per_km = ema_update(
            user.avg_drain_rate_per_km, user.var_drain_rate_per_km, outcome.drain_rate_per_km
        )
        user.km_observations += 1
    user.save()
