"""A repeated historical `/predict` answered from the booking's stored prediction, when nothing it used has changed.

Why: Laravel asks the same question again and again (a renter opening the app, a staff page, a batch of the day's
bookings), and a fresh answer costs a locked transaction, the walk, the model and two writes, where the stored
answer is one indexed read (docs/performance.md). The seeds' peer services answer from a cache in the same way.

When the stored answer is the fresh one:
- it answered the same question: the same booking, renter, start time and trigger (`predict` or `batch`, whose intervals
  are calibrated apart), in historical mode, with no need of its own (a need in the request is answered fresh);
- the car has not changed since: its `revision`, moved on by every event, real-time level and re-pricing under the
  car's lock (`bookings.services.vehicle_lock`), is the one the prediction was made at;
- it is still in the same lead-time bucket (its calibration and shadow-scoring kind), and its plug-in deadline has
  not passed;
- it is at most PREDICTION_REUSE_SECONDS old (0 turns reuse off). That bounds what the car's revision does not
  see: the fleet-wide learning (interval calibration, shadow scores, the fleet prior, all cached per process for
  seconds already), a renter's pattern learned on another car, and a champion promoted before the re-pricing has
  reached this car.

A reused answer stores nothing: it keeps its `prediction_id` and its `timestamp`, which say when it was computed.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import cache

from django.conf import settings
from django.db import connection

from bookings.models import Vehicle
from bookings.selectors import fleet_clock
from common.rows import placeholders
from predictions.calibration import lead_time_label
from predictions.models import Prediction, PredictionMethod

REUSABLE_TRIGGERS = ("predict", "batch")
HISTORICAL_METHODS = (PredictionMethod.HISTORICAL, PredictionMethod.PATTERN_HISTORICAL)


# The columns a reused answer is built from (`predictions.bodies.prediction_body`) and checked on.
_ANSWER_COLUMNS = (
    "id",
    "prediction_id",
    "booking_external_id",
    "predicted_at",
    "booking_start_time",
    "predicted_battery",
    "confidence_lower",
    "confidence_upper",
    "confidence_level",
    "prediction_method",
    "model_version",
    "cascade_steps",
    "calibration_key",
    "served_by",
    "required_level",
    "probability_ready",
    "at_risk",
    "charge_needed",
    "plug_in_by",
)


@cache
def _lookup_sql() -> str:
    """The lookup as SQL, built once per process: the ORM would compile the same join and filters on every call,
    which took most of a reused answer's time (docs/performance.md). It reads the booking's current prediction
    through the partial unique index `one_current_prediction_per_booking`."""
    qn = connection.ops.quote_name
    columns = ", ".join(f"p.{qn(c)}" for c in _ANSWER_COLUMNS)
    methods = placeholders(len(HISTORICAL_METHODS))
    return (
        f"SELECT {columns} FROM {qn(Prediction._meta.db_table)} p "
        f"JOIN {qn(Vehicle._meta.db_table)} v ON v.id = p.vehicle_id "
        "WHERE p.booking_external_id = %s AND p.is_current = %s AND p.trigger = %s "
        f"AND p.prediction_method IN ({methods}) AND p.booking_start_time = %s AND p.user_id = %s "
        "AND p.predicted_at >= %s AND p.predicted_at <= %s "
        "AND v.external_id = %s AND p.vehicle_revision = v.revision"
    )


def prediction_reusable(
    *, vehicle_id: str, booking_id: str, user_id: str, booking_start_time: datetime, trigger: str, now: datetime
) -> Prediction | None:
    """The booking's stored prediction if it answers this historical question as a fresh one would (one query)."""
    ttl = settings.PREDICTION_REUSE_SECONDS
    if ttl <= 0 or not booking_id or trigger not in REUSABLE_TRIGGERS:
        return None
    when = connection.ops.adapt_datetimefield_value
    params = [
        booking_id,
        True,
        trigger,
        *HISTORICAL_METHODS,
        when(booking_start_time),
        user_id,
        when(now - timedelta(seconds=ttl)),
        when(now),
        vehicle_id,
    ]
    stored = next(iter(Prediction.objects.raw(_lookup_sql(), params)), None)
    if stored is None:
        return None
    present = fleet_clock(now=now)
    if booking_start_time <= present:
        return None  # a pick-up already reached is priced for the moment it can still happen
    if stored.calibration_key.rpartition("|")[2] != lead_time_label(present=present, target=booking_start_time):
        return None
    if stored.plug_in_by is not None and stored.plug_in_by < present:
        return None
    return stored
