"""What operations should act on: cars that will be picked up too low, bookings whose car may not have what
they need, and cars whose idle drain jumped.

A booking is listed as low when its current prediction, or the lower end of its 95 % interval, is under the
threshold: the renter might find a car they cannot drive far, so staff charge or swap it first. It is listed
as at risk when its prediction's readiness says so (docs/readiness.md): the probability that the car has the
level this booking needs is under READINESS_RISK_THRESHOLD.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import F, Q
from django.utils import timezone

from bookings.models import BookingStatus
from callbacks.models import CallbackItem
from callbacks.services import READINESS_EVENT
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


AT_RISK_LIMIT = 500


def readiness_risk_threshold() -> float:
    return float(settings.READINESS_RISK_THRESHOLD)


def _percent(probability: float | None) -> float | None:
    """In percent with its decimals kept: 0.899 rounded to "90 %" would hide why a booking is at risk."""
    return None if probability is None else 100 * probability


@dataclass(frozen=True)
class SwapSuggestion:
    vehicle_id: str
    probability_ready: float | None

    @property
    def percent_ready(self) -> float | None:
        return _percent(self.probability_ready)


@dataclass(frozen=True)
class AtRiskBooking:
    prediction: Prediction
    suggestions: list[SwapSuggestion]
    deadline_passed: bool  # plug_in_by was still ahead when predicted, but is behind us now

    @property
    def cannot_reach_in_time(self) -> bool:
        """No plug-in time on an at-risk prediction: the needed level is out of reach before the pick-up."""
        return self.prediction.plug_in_by is None

    @property
    def percent_ready(self) -> float | None:
        return _percent(self.prediction.probability_ready)


def at_risk_upcoming(*, days: int, now: datetime | None = None) -> list[AtRiskBooking]:
    """Scheduled bookings picked up within `days` whose current prediction is at risk, with swap suggestions.

    Ordered as a to-do list by the latest moment staff can still act: first the bookings with no plug-in
    time (the charge cannot be reached in time, so only a swap helps), then by `plug_in_by`. Two queries
    whatever the number of rows.
    """
    now = now or timezone.now()
    predictions = list(
        Prediction.objects.filter(
            is_current=True,
            at_risk=True,
            actual_battery__isnull=True,
            booking__status=BookingStatus.SCHEDULED,
            booking_start_time__gte=now,
            booking_start_time__lt=now + timedelta(days=days),
        )
        .select_related("vehicle")
        .order_by(F("plug_in_by").asc(nulls_first=True), "booking_start_time", "id")[:AT_RISK_LIMIT]
    )
    suggestions = swap_suggestions(booking_ids=[p.booking_external_id for p in predictions])
    return [
        AtRiskBooking(
            prediction=p,
            suggestions=suggestions.get(p.booking_external_id, []),
            deadline_passed=p.plug_in_by is not None and p.plug_in_by < now,
        )
        for p in predictions
    ]


def _probability(value: object) -> float | None:
    """A number from a callback body, or None: the page shows the car without a figure rather than fail."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def swap_suggestions(*, booking_ids: list[str]) -> dict[str, list[SwapSuggestion]]:
    """Each booking's swap suggestions from its newest `booking.readiness_changed` callback, in one query.

    A readiness callback names its booking in a `CallbackItem` (with the prediction's sequence), so the newest
    one per booking is found through the items. A body that is not the expected shape is ignored: a page must
    not fail on one odd row.
    """
    if not booking_ids:
        return {}
    rows = (
        CallbackItem.objects.filter(booking_external_id__in=set(booking_ids), outbox__event=READINESS_EVENT)
        .order_by("booking_external_id", "-sequence", "-pk")
        .values_list("booking_external_id", "outbox__body")
    )
    found: dict[str, list[SwapSuggestion]] = {}
    for booking_id, body in rows:
        if booking_id in found:  # newest first: a booking's first row wins
            continue
        try:
            vehicles = json.loads(body).get("suggested_vehicles") or []
        except (ValueError, TypeError, AttributeError):
            continue
        found[booking_id] = [
            SwapSuggestion(vehicle_id=str(v["vehicle_id"]), probability_ready=_probability(v.get("probability_ready")))
            for v in vehicles
            if isinstance(v, dict) and v.get("vehicle_id") not in (None, "")
        ]
    return found
