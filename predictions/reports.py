"""Read-side assemblies for the timeline and model-info endpoints."""

from __future__ import annotations

from datetime import timedelta

from django.db.models import Count, Q, Sum
from django.utils import timezone

from bookings.models import BatteryReading, Booking, BookingStatus, Vehicle
from common.api.fields import iso
from core.physics import BASE_STD
from learning.models import AccuracyMetric, BookingOutcome, VehiclePattern
from learning.selectors import fleet_prior, model_champion, model_version_body
from predictions.bodies import affected_item
from predictions.models import Prediction
from predictions.services import MODEL_VERSION
from predictions.shadow import shadow_report

PATTERN_DESCRIPTION = (
    "Physics cascade through the car's schedule: idle drain and tapered charging while parked, "
    "drain per hour while driven, with per-car and per-renter rates learned by EMA (alpha 0.3) "
    "and shrunk towards the fleet average while a car has few bookings."
)
MODEL_DESCRIPTION = (
    "LightGBM quantile models of how much each parked gap and each trip changes the level beyond the "
    "car's own learned physics (charge rate up to its charge ceiling, idle drain, drain per hour), "
    "composed through the car's schedule by Monte Carlo; features are the car's and the renter's "
    "replayed outcome history. Intervals are calibrated on held-out outcomes."
)


def _reading(r: BatteryReading | None) -> dict | None:
    if r is None:
        return None
    return {
        "level": r.level,
        "recorded_at": iso(r.recorded_at),
        "source": r.source,
        "charging": r.charging,
        "booking_id": r.booking.external_id if r.booking_id else None,
    }


def pattern_summary(p: VehiclePattern | None) -> dict | None:
    if p is None:
        return None
    return {
        "avg_drain_rate_per_hour": p.avg_drain_rate_per_hour,
        "std_drain_rate_per_hour": round(p.std_drain_rate_per_hour, 4),
        "avg_drain_rate_per_km": p.avg_drain_rate_per_km,
        "avg_idle_drain_per_hour": p.avg_idle_drain_per_hour,
        "std_idle_drain_per_hour": round(p.std_idle_drain_per_hour, 4),
        "avg_charging_rate_per_hour": p.avg_charging_rate_per_hour,
        "std_charging_rate_per_hour": round(p.std_charging_rate_per_hour, 4),
        "charging_frequency": round(p.charging_frequency, 4),
        "unreported_charges": p.unreported_charges,
        "total_bookings": p.total_bookings,
        "pattern_confidence": p.pattern_confidence,
        "updated_at": iso(p.updated_at),
    }


def vehicle_timeline(*, vehicle: Vehicle, days: int) -> dict:
    """The car's readings and bookings (finished ones from the last `days`, all upcoming ones)."""
    since = timezone.now() - timedelta(days=days)
    bookings = list(
        Booking.objects.filter(vehicle=vehicle)
        .filter(Q(status__in=[BookingStatus.SCHEDULED, BookingStatus.ACTIVE]) | Q(scheduled_start__gte=since))
        .order_by("scheduled_start", "id")
    )
    current = {
        p.booking_external_id: p
        for p in Prediction.objects.filter(booking_external_id__in=[b.external_id for b in bookings], is_current=True)
    }
    readings = list(
        BatteryReading.objects.filter(vehicle=vehicle, recorded_at__gte=since)
        .select_related("booking")
        .order_by("recorded_at", "id")
    )
    last = (
        readings[-1]
        if readings
        else (BatteryReading.objects.filter(vehicle=vehicle).select_related("booking").order_by("-recorded_at").first())
    )
    rows = []
    for b in bookings:
        p = current.get(b.external_id)
        rows.append(
            {
                "booking_id": b.external_id,
                "user_id": b.user_id,
                "status": b.status,
                "starts_at": iso(b.scheduled_start),
                "ends_at": iso(b.scheduled_end),
                "actual_started_at": iso(b.actual_start),
                "actual_ended_at": iso(b.actual_end),
                "battery_at_start": b.battery_at_start,
                "battery_at_end": b.battery_at_end,
                "charging_at_end": b.charging_at_end,
                "prediction": affected_item(p) if p else None,
                "prediction_error": p.prediction_error if p else None,
            }
        )
    return {
        "vehicle_id": vehicle.external_id,
        "pattern": pattern_summary(VehiclePattern.objects.filter(vehicle=vehicle).first()),
        "last_reading": _reading(last),
        "readings": [_reading(r) for r in readings],
        "bookings": rows,
    }


def model_info() -> dict:
    """What answers predictions now, the fleet prior, the data seen so far and the serving version's accuracy.

    The seed's fields describe the serving predictor: the champion model when its artifact loaded,
    otherwise the pattern cascade. `serving` and `champion` are added beside them (never instead).
    """
    prior = fleet_prior()
    champion, serving_model = model_champion()
    version = champion.version if serving_model else MODEL_VERSION
    totals = AccuracyMetric.objects.filter(model_version=version).aggregate(
        n=Sum("count"), abs=Sum("sum_abs_error"), w10=Sum("within_10"), inside=Sum("inside_interval")
    )
    n = totals["n"] or 0
    counts = Booking.objects.aggregate(
        vehicles=Count("vehicle", distinct=True),
        bookings=Count("id"),
        upcoming=Count("id", filter=Q(status=BookingStatus.SCHEDULED)),
    )
    return {
        "model_name": "gap_trip_model" if serving_model else "pattern_cascade",
        "model_version": version,
        "model_type": "GapTripLightGBM" if serving_model else "PatternCascade",
        "status": "LOADED",
        "description": MODEL_DESCRIPTION if serving_model else PATTERN_DESCRIPTION,
        "serving": "model" if serving_model else "pattern_cascade",
        "champion": model_version_body(champion) if champion is not None else None,
        "shadow_scoring": shadow_report(model_available=serving_model),
        "confidence_level": 0.95,
        "fleet_prior": {
            "idle_drain_per_hour": round(prior.idle_drain, 4),
            "charging_rate_per_hour": round(prior.charge, 3),
            "drain_rate_per_hour": round(prior.drive, 3),
            "plug_in_probability": round(prior.plug_probability, 4),
            "plug_in_habit": round(prior.plug_habit, 4),  # on the cars seen charging: what renters are shrunk towards
            "cars_with_patterns": prior.cars,
            "base_std": BASE_STD,
        },
        "statistics": {
            "vehicles": counts["vehicles"],
            "bookings": counts["bookings"],
            "upcoming_bookings": counts["upcoming"],
            "outcomes": BookingOutcome.objects.count(),
            "predictions": Prediction.objects.count(),
        },
        "accuracy": {
            "scored_predictions": n,
            "mae": round(totals["abs"] / n, 3) if n else None,
            "within_10": round(totals["w10"] / n, 4) if n else None,
            "interval_coverage": round(totals["inside"] / n, 4) if n else None,
        },
    }
