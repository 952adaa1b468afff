"""One car's story on a time axis: its battery readings, its bookings, and what we predicted for each.

Staff open it from the car's admin page to see why a prediction was off: was the car found charged,
drained by an earlier renter, or left parked for days? And ahead: by when must an at-risk car be plugged in?
Three queries whatever the window.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Q
from django.utils import timezone

from bookings.models import BatteryReading, Booking, BookingStatus, Vehicle
from learning.models import VehiclePattern
from predictions.models import Prediction

DEFAULT_PAST_DAYS = 14
DEFAULT_FUTURE_DAYS = 7
MAX_WINDOW_DAYS = 120  # a longer window is cut to this, so one page never reads a car's whole life


@dataclass(frozen=True)
class TimelineRow:
    booking: Booking
    prediction: Prediction | None

    @property
    def actual(self) -> float | None:
        return self.booking.battery_at_start

    @property
    def error(self) -> float | None:
        if self.prediction is None or self.actual is None:
            return None
        return self.actual - self.prediction.predicted_battery

    @property
    def covered(self) -> bool | None:
        if self.prediction is None or self.actual is None:
            return None
        return self.prediction.confidence_lower <= self.actual <= self.prediction.confidence_upper

    @property
    def at_risk(self) -> bool:
        return self.prediction is not None and bool(self.prediction.at_risk)

    @property
    def percent_ready(self) -> float | None:
        """In percent with its decimals: 0.899 shown as "90 %" would hide why it is at risk."""
        p = self.prediction
        return None if p is None or p.probability_ready is None else 100 * p.probability_ready

    @property
    def deadline_label(self) -> str | None:
        """ "plug in by 14:05 (+12.5 pts)" for an at-risk prediction that a charge can still save, else None."""
        p = self.prediction
        if not self.at_risk or p.plug_in_by is None:
            return None
        return f"plug in by {timezone.localtime(p.plug_in_by):%H:%M} (+{p.charge_needed or 0:.1f} pts)"


@dataclass
class CarTimeline:
    vehicle: Vehicle
    since: datetime
    until: datetime
    readings: list[BatteryReading]
    rows: list[TimelineRow]
    pattern: VehiclePattern | None
    chart: dict


def _ms(at: datetime | None) -> int | None:
    return None if at is None else int(at.timestamp() * 1000)


def _chart(readings: list[BatteryReading], rows: list[TimelineRow], since: datetime, until: datetime) -> dict:
    """Points in epoch milliseconds, as the page's Chart.js linear time axis reads them.

    `deadlines` are the latest plug-in times of the at-risk pick-ups (docs/readiness.md), drawn as dashed
    vertical lines before them so staff see how long they have to charge the car.
    """
    predicted, actual, bands, deadlines = [], [], [], []
    for row in rows:
        b, p = row.booking, row.prediction
        start = b.actual_start or b.scheduled_start
        end = b.actual_end or b.scheduled_end or start
        bands.append({"start": _ms(start), "end": _ms(end), "status": b.status, "booking_id": b.external_id})
        if p is not None:
            predicted.append(
                {
                    "x": _ms(p.booking_start_time),
                    "y": round(p.predicted_battery, 1),
                    "lower": round(p.confidence_lower, 1),
                    "upper": round(p.confidence_upper, 1),
                    "booking_id": b.external_id,
                }
            )
        if row.deadline_label is not None:
            deadlines.append(
                {
                    "x": _ms(p.plug_in_by),
                    "pickup": _ms(p.booking_start_time),
                    "charge_needed": p.charge_needed,
                    "label": row.deadline_label,
                    "booking_id": b.external_id,
                }
            )
        if row.actual is not None:
            actual.append({"x": _ms(b.actual_start or b.scheduled_start), "y": row.actual, "booking_id": b.external_id})
    return {
        "since": _ms(since),
        "until": _ms(until),
        "readings": [{"x": _ms(r.recorded_at), "y": r.level, "source": r.source} for r in readings],
        "predicted": predicted,
        "actual": actual,
        "bands": bands,
        "deadlines": deadlines,
    }


def car_timeline(*, vehicle: Vehicle, since: datetime | None = None, until: datetime | None = None) -> CarTimeline:
    """Readings and bookings overlapping [since, until]; by default the last two weeks and the next one."""
    now = timezone.now()
    since = since or now - timedelta(days=DEFAULT_PAST_DAYS)
    until = until or now + timedelta(days=DEFAULT_FUTURE_DAYS)
    if until - since > timedelta(days=MAX_WINDOW_DAYS):
        since = until - timedelta(days=MAX_WINDOW_DAYS)
    bookings = list(
        Booking.objects.filter(vehicle=vehicle, scheduled_start__lt=until)
        .filter(Q(scheduled_start__gte=since) | Q(status__in=[BookingStatus.SCHEDULED, BookingStatus.ACTIVE]))
        .order_by("scheduled_start", "id")
    )
    current = {
        p.booking_external_id: p
        for p in Prediction.objects.filter(
            booking_external_id__in=[b.external_id for b in bookings], is_current=True
        ).only(
            "booking_external_id",
            "booking_start_time",
            "predicted_at",
            "predicted_battery",
            "confidence_lower",
            "confidence_upper",
            "prediction_method",
            "model_version",
            "required_level",
            "probability_ready",
            "at_risk",
            "charge_needed",
            "plug_in_by",
        )
    }
    readings = list(
        BatteryReading.objects.filter(vehicle=vehicle, recorded_at__gte=since, recorded_at__lt=until).order_by(
            "recorded_at", "id"
        )
    )
    rows = [TimelineRow(booking=b, prediction=current.get(b.external_id)) for b in bookings]
    return CarTimeline(
        vehicle=vehicle,
        since=since,
        until=until,
        readings=readings,
        rows=rows,
        pattern=VehiclePattern.objects.filter(vehicle=vehicle).first(),
        chart=_chart(readings, rows, since, until),
    )
