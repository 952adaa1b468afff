"""What operations should act on: cars that will be picked up too low, and cars whose idle drain jumped.

A booking is listed when its current prediction, or the lower end of its 95 % interval, is under the
threshold: the renter might find a car they cannot drive far, so staff charge or swap it first.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db.models import F, Q
from django.utils import timezone

from bookings.models import BookingStatus
from learning.models import VehiclePattern
from predictions.models import Prediction

LOW_BATTERY_LIMIT = 500
# An idle drain is a jump when it is at least this many times the car's own long-run drain and above it
# by at least IDLE_JUMP_MIN_POINTS per hour (so a car that barely drains is not flagged for 0.02 -> 0.05).
# No test in standard deviations: the slow EMA's spread absorbs the jump itself within a few gaps.
IDLE_JUMP_FACTOR = 2.0
IDLE_JUMP_MIN_POINTS = 0.2
IDLE_JUMP_MIN_OBSERVATIONS = 8  # fewer parked gaps are not a history to compare against


def low_battery_threshold() -> float:
    return float(settings.DASHBOARD_LOW_BATTERY_THRESHOLD)


def low_battery_upcoming(*, threshold: float, days: int, now=None) -> list[Prediction]:
    """Scheduled bookings picked up within `days` whose prediction or its lower bound is under `threshold`.

    Soonest first, so the list reads as a to-do list. Uses the current prediction of each booking.
    """
    now = now or timezone.now()
    return list(
        Prediction.objects.filter(
            is_current=True,
            booking__status=BookingStatus.SCHEDULED,
            booking_start_time__gte=now,
            booking_start_time__lt=now + timedelta(days=days),
        )
        .filter(Q(predicted_battery__lt=threshold) | Q(confidence_lower__lt=threshold))
        .select_related("booking", "vehicle")
        .order_by("booking_start_time", "id")[:LOW_BATTERY_LIMIT]
    )


@dataclass(frozen=True)
class IdleDrainJump:
    pattern: VehiclePattern
    recent: float
    baseline: float
    baseline_std: float

    @property
    def ratio(self) -> float:
        return self.recent / self.baseline if self.baseline > 0 else math.inf


def idle_drain_jumps() -> list[IdleDrainJump]:
    """Cars whose recent idle drain (fast EMA) has jumped against their own long-run drain (slow EMA).

    A battery going bad or a telematics unit that keeps the car awake shows up as a parked car losing
    charge much faster than it used to, long before a renter complains. Worst ratio first.
    """
    candidates = VehiclePattern.objects.filter(
        baseline_idle_observations__gte=IDLE_JUMP_MIN_OBSERVATIONS,
        baseline_idle_drain_per_hour__isnull=False,
        avg_idle_drain_per_hour__gte=F("baseline_idle_drain_per_hour") + IDLE_JUMP_MIN_POINTS,
    ).select_related("vehicle")
    jumps = []
    for pattern in candidates:
        recent, baseline = pattern.avg_idle_drain_per_hour, pattern.baseline_idle_drain_per_hour
        if recent >= IDLE_JUMP_FACTOR * max(baseline, 0.0):
            std = math.sqrt(pattern.baseline_var_idle_drain_per_hour)
            jumps.append(IdleDrainJump(pattern=pattern, recent=recent, baseline=baseline, baseline_std=std))
    return sorted(jumps, key=lambda j: (-j.ratio, j.pattern.vehicle.external_id))
