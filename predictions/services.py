"""Writes of predictions: single and batch predictions, the cascade over a car's schedule, and scoring at pick-up.

The predictor is the pattern cascade (`core.physics`) fed with rates learned per car and
per renter (`learning.selectors`). Every prediction issued is stored; the newest one for a
booking is flagged current.
"""

from __future__ import annotations

import math
import uuid
from collections import namedtuple
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache as once
from functools import lru_cache
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from bookings.models import BatteryReading, Booking, BookingStatus, InboundEvent, ReadingSource, Vehicle
from bookings.selectors import booking_by_external_id, bookings_open, bookings_open_before, fleet_clock
from bookings.services import default_duration, reading_record, vehicle_lock
from common.api.errors import DomainError
from common.api.fields import iso
from common.rows import db_value, insert, placeholders
from core import ml_cascade
from core.physics import FULL, Checkpoint, Rates, State, Trip, clamp, walk
from core.readiness import Requirement, readiness_assess
from learning.champion import champion_model
from learning.models import AccuracyMetric, UserPattern, VehiclePattern
from learning.selectors import (
    FleetPrior,
    deadline_charge_rate,
    deadline_charge_spread,
    feature_book_for,
    fleet_prior_cached,
    fleet_return_battery,
    renter_rates,
    user_patterns_for,
    vehicle_pattern_for,
    vehicle_rates,
)
from learning.signals import pickup_scored
from predictions.calibration import (
    calibration_key,
    calibration_learn,
    calibration_margins_cached,
    interval_widened,
    margins_borrowed,
    pit_keys,
    readiness_calibration_for,
    readiness_calibration_learn,
    readiness_calibrations_cached,
)
from predictions.models import Prediction, PredictionMethod, PredictionStatus
from predictions.readiness import Need, fleet_requirement, requirements_for
from predictions.reuse import prediction_reusable
from predictions.selectors import reading_latest
from predictions.shadow import (
    CANDIDATES,
    SCORED_COLUMNS,
    candidate_levels,
    candidate_serving,
    shadow_kind,
    shadow_learn,
    shadow_scores_cached,
)
from predictions.signals import predictions_stored

MODEL_VERSION = "pattern-cascade-1.0"  # recorded on predictions made without a trained model
PERSISTENCE_VERSION = "carry-forward-1.0"  # recorded on predictions served by carrying the last level forward
MEDIAN_VERSION = "median-of-candidates-1.0"  # recorded on predictions served by the candidates' median
SERVED_VERSIONS = {"pattern": MODEL_VERSION, "persistence": PERSISTENCE_VERSION, "median": MEDIAN_VERSION}
PATTERN_PREFIX = "pattern_"
NO_READING_STD = 25.0  # a car we never heard a level from: anything from nearly empty to full


@dataclass(frozen=True)
class PlannedBooking:
    """A booking on the car's schedule as the predictor sees it."""

    booking_id: str
    start: datetime
    end: datetime | None
    user_id: str = ""


def _state_from(reading: BatteryReading | None, *, unknown_at: datetime) -> State:
    """The walk's starting point: the reading, or for a car never heard of, the fleet's usual return level."""
    if reading is None:
        return State(level=fleet_return_battery(), at=unknown_at, variance=NO_READING_STD**2)
    return State(level=reading.level, at=reading.recorded_at, charging=reading.charging)


def _trips(planned: Iterable[PlannedBooking], rates: Rates, users: dict[str, UserPattern]) -> list[Trip]:
    """The planned bookings as the walk drives them, each with its renter's learned rates (from `users`)."""
    trips = []
    for p in planned:
        renter = renter_rates(users.get(p.user_id), rates)
        trips.append(
            Trip(
                booking_id=p.booking_id,
                start=p.start,
                end=p.end or p.start + default_duration(),
                drive=renter.drive,
                drive_std=renter.drive_std,
                plug_probability=renter.plug_probability,
                user_id=p.user_id,
            )
        )
    return sorted(trips, key=lambda t: (t.start, t.booking_id))


def _method(*, has_reading: bool, real_time: bool, trips_before: int, model: bool = True) -> str:
    """The seed's method names; without a trained model, prefixed `pattern_` so Laravel and staff can tell."""
    if not has_reading or not real_time:
        method = PredictionMethod.HISTORICAL
    else:
        method = PredictionMethod.REAL_TIME_CASCADE if trips_before else PredictionMethod.REAL_TIME
    return method if model else f"{PATTERN_PREFIX}{method}"


@dataclass(frozen=True)
class PatternPoint:
    """The pattern walk's answer at one target, kept before the model re-prices it (a shadow candidate)."""

    level: float
    lower: float
    upper: float
    steps: tuple[tuple[float, float], ...] = ()  # each step's (battery_change, battery_after), when a model re-prices


def _predict_walk(
    *,
    vehicle: Vehicle,
    pattern: VehiclePattern | None,
    prior: FleetPrior,
    state: State,
    planned: Iterable[PlannedBooking],
    targets: list[tuple[str, datetime]],
    rates: Rates,
) -> tuple[list[Checkpoint], str | None, list[PatternPoint]]:
    """Walk the schedule with the pattern physics, then let the champion model re-price it when one serves.

    Returns the checkpoints, the model version that priced them (None: the pattern cascade) and the
    pattern walk's own answers (the same as the checkpoints' without a model). The car's pattern and the fleet's
    prior (as the caller read them for the rates) and the renters' patterns are read once, for their rates and
    the model's features.
    """
    planned = list(planned)
    users = user_patterns_for(p.user_id for p in planned)
    trips = _trips(planned, rates, users)
    model = champion_model()
    trace: list[tuple] | None = [] if model is not None else None
    checkpoints = walk(state, trips, targets, rates, trace=trace)
    if model is None:
        return checkpoints, None, [PatternPoint(c.level, c.lower, c.upper) for c in checkpoints]
    patterns = [
        PatternPoint(c.level, c.lower, c.upper, tuple((s["battery_change"], s["battery_after"]) for s in c.steps))
        for c in checkpoints
    ]
    book = feature_book_for(vehicle=vehicle, user_ids=[t.user_id for t in trips], users=users, pattern=pattern)
    points = ml_cascade.compose(
        model,
        trace,
        car_id=vehicle.external_id,
        book=book,
        fleet_plug=prior.plug_habit,
        start_std=math.sqrt(state.variance),
    )
    ml_cascade.apply(points, checkpoints)
    return checkpoints, model.version, patterns


def prediction_id_new(booking_id: str, vehicle: Vehicle) -> str:
    """A new prediction's id, as Laravel sees it."""
    return f"PRED_{booking_id or 'V' + vehicle.external_id}_{uuid.uuid4().hex[:12]}"


@dataclass(frozen=True)
class Served:
    """What one candidate answers at one target: the level and its 95 % interval, before calibration."""

    predictor: str
    level: float
    lower: float
    upper: float


def _candidates(checkpoint: Checkpoint, pattern: PatternPoint, start: State, model: bool) -> dict[str, Served]:
    """Every candidate's answer at a checkpoint. Persistence carries the start level forward, and the median takes
    the middle of the others' levels (`predictions.shadow.candidate_levels`). The interval of each is the default
    candidate's width around its level, stretched to hold the default's own interval too (calibration then fits
    its own margins).

    Why the stretch: persistence has no physics, so its band alone misses every car that charges or drains
    far from where it was (a car left charging gains 40 points, the band around its old level is 20 wide),
    and one interval margin per kind cannot tell those cars from the rest. The default's interval says where
    the physics expects the car; the served level stays the candidate's.
    """
    default = Served("model" if model else "pattern", checkpoint.level, checkpoint.lower, checkpoint.upper)
    levels = candidate_levels(checkpoint.level if model else None, pattern.level, clamp(start.level))
    answers = {
        "pattern": Served("pattern", pattern.level, pattern.lower, pattern.upper),
        "persistence": _around(default, "persistence", levels["persistence"]),
        "median": _around(default, "median", levels["median"]),
    }
    if model:
        answers["model"] = default
    return answers


def _around(default: Served, predictor: str, level: float) -> Served:
    """`predictor`'s level with the default's interval width around it, stretched to hold the default's interval."""
    return Served(
        predictor,
        level,
        max(0.0, min(level - (default.level - default.lower), default.lower)),
        min(100.0, max(level + (default.upper - default.level), default.upper)),
    )


def _steps_of(served: Served, checkpoint: Checkpoint, pattern: PatternPoint) -> list[dict]:
    """The steps of the walk that served: the pattern's own numbers when it serves beside a model."""
    if served.predictor != "pattern" or not pattern.steps:
        return checkpoint.steps
    return [
        {**step, "battery_change": round(change, 2), "battery_after": round(after, 2)}
        for step, (change, after) in zip(checkpoint.steps, pattern.steps, strict=True)
    ]


def _priced(
    *,
    vehicle: Vehicle,
    checkpoints: Sequence[Checkpoint],
    patterns: Sequence[PatternPoint],
    start: State,
    has_reading: bool,
    real_time: bool,
    bookings: dict[str, Booking],
    user_ids: dict[str, str],
    trigger: str,
    event: InboundEvent | None,
    now: datetime,
    model_version: str | None,
    requirements: dict[str, Requirement],
    charge_rate: float,
    present: datetime,
    charge_spread: float = 0.0,
    ceiling: float = FULL,
) -> list[Prediction]:
    """The predictions of a walk's checkpoints, as they would be stored (unsaved rows; no query of their own).

    Each prediction is served by the candidate that shadow scoring picks for its kind
    (`predictions.shadow`), and records every candidate's level so that its pick-up scores them
    all. Each interval is then widened by what the scored outcomes taught about its kind
    (`predictions.calibration`). Lead times run from `present` (`_present`).

    Each is also assessed for readiness (`core.readiness`) against its booking's requirement (the fleet's rule
    when it has none in `requirements`), from the very numbers stored, so a response recomputes nothing; a
    plug-in time before that same present is no use and is left empty.
    """
    margins = calibration_margins_cached()
    pits = readiness_calibrations_cached()
    scores = shadow_scores_cached()
    model = model_version is not None
    default = "model" if model else "pattern"
    available = CANDIDATES if model else CANDIDATES[1:]
    threshold = settings.READINESS_RISK_THRESHOLD
    default_requirement = fleet_requirement()
    rows = []
    for checkpoint, pattern in zip(checkpoints, patterns, strict=True):
        booking = bookings.get(checkpoint.booking_id)
        own = event is None or checkpoint.booking_id == event.booking_external_id
        kind = shadow_kind(own=own, present=present, target=checkpoint.at, charging=start.charging, level=start.level)
        answers = _candidates(checkpoint, pattern, start, model)
        served = answers[candidate_serving(scores, kind=kind or "*", available=available, default=default)]
        level = round(served.level, 2)
        key = calibration_key(
            predictor=served.predictor, trigger=trigger, own=own, present=present, target=checkpoint.at
        )
        # A candidate that has just started serving a kind has no margins of its own yet: it borrows the
        # default's for the same kind (its interval is the default's width), not none at all.
        learned = margins_borrowed(margins, key)
        lower, upper = interval_widened(served.level, served.lower, served.upper, learned)
        lower, upper = min(round(lower, 2), level), max(round(upper, 2), level)
        ready = readiness_assess(
            level=level,
            lower=lower,
            upper=upper,
            requirement=requirements.get(checkpoint.booking_id, default_requirement),
            threshold=threshold,
            pickup=checkpoint.at,
            present=present,
            charge_rate=charge_rate,
            charge_spread=charge_spread,
            ceiling=ceiling,
            calibration=readiness_calibration_for(pits, pit_keys(calibration_key=key, shadow_kind=kind)),
        )
        rows.append(
            Prediction(
                prediction_id=prediction_id_new(checkpoint.booking_id, vehicle),
                booking_external_id=checkpoint.booking_id,
                booking=booking,
                vehicle=vehicle,
                user_id=user_ids.get(checkpoint.booking_id, ""),
                predicted_at=now,
                booking_start_time=checkpoint.at,
                predicted_battery=level,
                confidence_lower=lower,
                confidence_upper=upper,
                prediction_method=_method(
                    has_reading=has_reading,
                    real_time=real_time,
                    trips_before=checkpoint.trips_before,
                    model=served.predictor == "model",
                ),
                model_version=SERVED_VERSIONS.get(served.predictor) or model_version,
                cascade_steps=_steps_of(served, checkpoint, pattern),
                trigger=trigger,
                calibration_key=key,
                trigger_event=event,
                is_current=bool(checkpoint.booking_id),
                served_by=served.predictor,
                shadow_kind=kind,
                model_level=answers["model"].level if model else None,
                pattern_level=answers["pattern"].level,
                persistence_level=answers["persistence"].level,
                required_level=ready.required_level,
                required_std=ready.required_std,
                probability_ready=ready.probability_ready,
                at_risk=ready.at_risk,
                charge_needed=ready.charge_needed,
                plug_in_by=ready.plug_in_by,
                vehicle_revision=vehicle.revision,
            )
        )
    return rows


def _deadline_charging(pattern: VehiclePattern | None, rates: Rates, prior: FleetPrior) -> dict[str, float]:
    """What a plug-in deadline counts on: the charging rate, the relative spread of what it delivers, and where
    the car's charging stops."""
    rate = deadline_charge_rate(pattern, prior)
    return {"charge_rate": rate, "charge_spread": deadline_charge_spread(rates, rate), "ceiling": rates.ceiling}


def _present(*, now: datetime, start: State) -> datetime:
    """The moment lead times and readiness are judged from: the fleet's clock, or the walk's start (when the
    starting level was known) if that is newer."""
    return max(fleet_clock(now=now), start.at)


@lru_cache(maxsize=64)
def _superseded_sql(bookings: int) -> str:
    """The UPDATE that makes `bookings` bookings' current predictions former ones, built once per count.

    Hand-written because the ORM's `filter(...).update(...)` compiled the same statement on every prediction
    (docs/performance.md). The literals (not parameters) let even a prepared generic plan match the partial unique
    index `one_current_prediction_per_booking`, as the ORM's SQL did."""
    qn = connection.ops.quote_name
    return (
        f"UPDATE {qn(Prediction._meta.db_table)} SET {qn('is_current')} = false "
        f"WHERE {qn('booking_external_id')} IN ({placeholders(bookings)}) AND {qn('is_current')}"
    )


def _store(
    *,
    vehicle: Vehicle,
    bookings: dict[str, Booking],
    trigger: str,
    event: InboundEvent | None,
    told: bool = True,
    **walk: Any,
) -> list[Prediction]:
    """Insert the predictions `_priced` makes of a walk and make them their bookings' current ones (two queries).

    Call while holding the vehicle lock: that is what keeps one current prediction per booking. Sends
    `predictions_stored`, with the bookings whose readiness Laravel is to be told of when it changed (none
    unless `told`: a `/predict` asking about another need or time is a question, not the booking's state).
    """
    present = _present(now=walk["now"], start=walk["start"])
    rows = _priced(vehicle=vehicle, bookings=bookings, trigger=trigger, event=event, present=present, **walk)
    booking_ids = [p.booking_external_id for p in rows if p.booking_external_id]
    if booking_ids:
        with connection.cursor() as cursor:
            cursor.execute(_superseded_sql(len(booking_ids)), booking_ids)
    stored = insert(Prediction, rows)
    predictions_stored.send(
        sender=Prediction,
        vehicle=vehicle,
        predictions=stored,
        bookings=bookings if told else {},
        trigger=trigger,
        event=event,
        present=present,
    )
    return stored


def prediction_predict(
    *,
    vehicle_id: str,
    booking_start_time: datetime,
    booking_id: str = "",
    user_id: str = "",
    current_battery_level: float | None = None,
    current_timestamp: datetime | None = None,
    intermediate_bookings: list[dict] | None = None,
    trigger: str = "predict",
    need: Need | None = None,
) -> Prediction:
    """Predict the battery when a booking starts, and store the prediction.

    Real-time mode (a current level is given): start from that level, which is recorded as a
    reading, and drive through `intermediate_bookings` (or, when the caller sends none, the
    bookings we know between now and the start). Historical mode: start from the car's last
    known reading before the start and the bookings we know after it.

    A pick-up whose time has already passed when the level is reported (the renter is late) is
    predicted for the moment of the report, the earliest it can now happen; the returned
    prediction's `notes` (not stored) say so.

    Readiness is assessed against `need` when it states one, else against what a known booking stored (its
    `booking.created` or `.modified`), else the fleet's rule. A predict request's need is for that answer only: it
    does not change what the booking stored, which only the booking events do.
    """
    now = timezone.now()
    if current_battery_level is None and (need is None or not need.given):
        reused = prediction_reusable(
            vehicle_id=vehicle_id,
            booking_id=booking_id,
            user_id=user_id,
            booking_start_time=booking_start_time,
            trigger=trigger,
            now=now,
        )
        if reused is not None:
            reused.notes = []
            return reused
    notes: list[str] = []
    if current_battery_level is not None and current_timestamp is not None and booking_start_time < current_timestamp:
        notes.append(
            f"booking_start_time {iso(booking_start_time)} is before current_timestamp: the pick-up is late, so "
            f"the level is predicted for {iso(current_timestamp)}, the earliest it can now happen"
        )
        booking_start_time = current_timestamp
    with transaction.atomic():
        # A historical question changes nothing about the car: its revision stays, so the answer may be reused.
        vehicle = vehicle_lock(external_id=vehicle_id, with_pattern=True, changes=current_battery_level is not None)
        booking = booking_by_external_id(booking_id) if booking_id else None
        if booking is not None and booking.vehicle_id != vehicle.pk:
            raise DomainError(
                f"booking {booking_id} belongs to another vehicle.",
                field="vehicle_id",
                code="vehicle_mismatch",
                status_code=409,
            )
        real_time = current_battery_level is not None
        if real_time:
            at = current_timestamp or now
            reading = reading_record(
                vehicle=vehicle, level=current_battery_level, at=at, source=ReadingSource.PREDICT_REQUEST
            )
        else:
            reading = reading_latest(vehicle=vehicle, at_or_before=booking_start_time)
        state = _state_from(reading, unknown_at=min(now, booking_start_time))
        if intermediate_bookings is not None and real_time:
            planned = [
                PlannedBooking(f"intermediate-{i}", b["starts_at"], b["ends_at"], b.get("user_id") or "")
                for i, b in enumerate(intermediate_bookings)
            ]
        else:
            planned = _known_bookings(vehicle=vehicle, after=state.at, before=booking_start_time, exclude=booking_id)
        pattern, prior = vehicle_pattern_for(vehicle), fleet_prior_cached()
        rates = vehicle_rates(pattern, prior)
        # Laravel is told of the booking's readiness only when this answer is about the booking as it stands.
        told = booking is not None and booking.status == BookingStatus.SCHEDULED and (need is None or not need.given)
        told = told and booking_start_time == booking.scheduled_start
        if (need is None or not need.given) and booking is not None:
            need = _need_of(booking)
        requirements = requirements_for(
            needs={booking_id: need} if need is not None else {},
            user_ids={booking_id: user_id or (booking.user_id if booking else "")},
            pattern=pattern,
            prior=prior,
        )
        checkpoints, version, patterns = _predict_walk(
            vehicle=vehicle,
            pattern=pattern,
            prior=prior,
            state=state,
            planned=planned,
            targets=[(booking_id, booking_start_time)],
            rates=rates,
        )
        [prediction] = _store(
            vehicle=vehicle,
            checkpoints=checkpoints,
            patterns=patterns,
            start=state,
            has_reading=reading is not None,
            real_time=real_time,
            bookings={booking_id: booking} if booking else {},
            told=told,
            user_ids={booking_id: user_id},
            trigger=trigger,
            event=None,
            now=now,
            model_version=version,
            requirements=requirements,
            **_deadline_charging(pattern, rates, prior),
        )
    prediction.notes = notes
    return prediction


def prediction_hypothetical(
    *, vehicle: Vehicle, starts_at: datetime, user_id: str, requirement: Requirement, now: datetime
) -> Prediction:
    """What the serving predictor would say of a booking starting at `starts_at` on `vehicle`: an unsaved row.

    For a swap: the car's last known level walked through its own known bookings before then, priced and
    calibrated as a real prediction would be, and assessed against `requirement`. Reads only, locks nothing:
    the car's schedule may move under it, which costs a suggestion, never a stored number.
    """
    reading = reading_latest(vehicle=vehicle, at_or_before=starts_at)
    state = _state_from(reading, unknown_at=min(now, starts_at))
    pattern, prior = vehicle_pattern_for(vehicle), fleet_prior_cached()
    rates = vehicle_rates(pattern, prior)
    planned = _known_bookings(vehicle=vehicle, after=state.at, before=starts_at, exclude="")
    checkpoints, version, patterns = _predict_walk(
        vehicle=vehicle,
        pattern=pattern,
        prior=prior,
        state=state,
        planned=planned,
        targets=[("", starts_at)],
        rates=rates,
    )
    [row] = _priced(
        vehicle=vehicle,
        checkpoints=checkpoints,
        patterns=patterns,
        start=state,
        has_reading=reading is not None,
        real_time=False,
        bookings={},
        user_ids={"": user_id},
        trigger="swap",
        event=None,
        now=now,
        model_version=version,
        requirements={"": requirement},
        **_deadline_charging(pattern, rates, prior),
        present=_present(now=now, start=state),
    )
    return row


def _known_bookings(*, vehicle: Vehicle, after: datetime, before: datetime, exclude: str) -> list[PlannedBooking]:
    """Scheduled and active bookings of the car that overlap (after, before)."""
    planned = [_planned(b) for b in bookings_open_before(vehicle=vehicle, before=before, exclude=exclude)]
    return [p for p in planned if (p.end or p.start + default_duration()) > after and p.start < before]


def _need_of(booking: Booking) -> Need:
    return Need(required_battery=booking.required_battery, planned_distance_km=booking.planned_distance_km)


def _planned(booking: Booking) -> PlannedBooking:
    return PlannedBooking(booking.external_id, booking.start, booking.scheduled_end, booking.user_id)


def predictions_cascade(
    *, vehicle: Vehicle, pivot: datetime | None, event: InboundEvent | None, trigger: str | None = None
) -> list[Prediction]:
    """Re-predict the car's scheduled bookings starting at or after `pivot` (all when None).

    One walk from the car's last known level through every scheduled and active booking, one
    batch insert. Call while holding the vehicle lock.
    """
    now = timezone.now()
    bookings = bookings_open(vehicle=vehicle)
    targets = [
        b for b in bookings if b.status == BookingStatus.SCHEDULED and (pivot is None or b.scheduled_start >= pivot)
    ]
    if not targets:
        return []
    reading = reading_latest(vehicle=vehicle)
    state = _state_from(reading, unknown_at=now)
    pattern, prior = vehicle_pattern_for(vehicle), fleet_prior_cached()
    rates = vehicle_rates(pattern, prior)
    user_ids = {b.external_id: b.user_id for b in targets}
    requirements = requirements_for(
        needs={b.external_id: _need_of(b) for b in targets}, user_ids=user_ids, pattern=pattern, prior=prior
    )
    checkpoints, version, patterns = _predict_walk(
        vehicle=vehicle,
        pattern=pattern,
        prior=prior,
        state=state,
        planned=(_planned(b) for b in bookings),
        targets=[(b.external_id, b.scheduled_start) for b in targets],
        rates=rates,
    )
    return _store(
        vehicle=vehicle,
        checkpoints=checkpoints,
        patterns=patterns,
        start=state,
        has_reading=reading is not None,
        real_time=True,
        bookings={b.external_id: b for b in targets},
        user_ids=user_ids,
        trigger=trigger or (event.event_type if event else "cascade"),
        event=event,
        now=now,
        model_version=version,
        requirements=requirements,
        **_deadline_charging(pattern, rates, prior),
    )


def predictions_cancel(*, booking_ids: list[str]) -> int:
    """Mark the open predictions of cancelled or no-show bookings cancelled (they stay in the history).

    A no-show's predictions will not be scored unless a late pick-up comes; cancelled, retention may remove the
    superseded ones.
    """
    return Prediction.objects.filter(booking_external_id__in=booking_ids, status=PredictionStatus.PENDING).update(
        status=PredictionStatus.CANCELLED
    )


def predictions_score_pickup(*, booking: Booking, reading: BatteryReading) -> None:
    """The booking's pick-up level is known: score its predictions, then let learning learn from the pick-up.

    Learning's error correction needs the current prediction's error, which only scoring knows: it is handed
    on with `learning.signals.pickup_scored`.
    """
    error = predictions_score(booking=booking, actual=reading.level, at_day=reading.recorded_at.date())
    pickup_scored.send(sender=Prediction, booking=booking, reading=reading, error=error)


def predictions_score(*, booking: Booking, actual: float, at_day) -> float | None:
    """Fill the actual level into every prediction of the booking; return the current one's error.

    The predictions not scored yet also teach the interval calibration of their kinds, the readiness
    recalibration of their lead times, and score every candidate predictor they recorded (shadow scoring).

    The current prediction (the latest before pick-up) is what Laravel showed, so it is the one
    counted in the daily accuracy metrics.
    """
    with connection.cursor() as cursor:  # one read for both learners and the daily metrics
        cursor.execute(_unscored_sql(), [booking.external_id])
        rows = [_Unscored(*row) for row in cursor.fetchall()]
    current = _current_of(booking, rows)
    calibration_learn(
        scored=[(r.calibration_key, r.confidence_lower, r.confidence_upper) for r in rows],
        actual=actual,
        at=timezone.now(),
    )
    readiness_calibration_learn(
        scored=[
            (
                pit_keys(calibration_key=r.calibration_key, shadow_kind=r.shadow_kind),
                r.predicted_battery,
                r.confidence_lower,
                r.confidence_upper,
            )
            for r in rows
        ],
        actual=actual,
        at=timezone.now(),
    )
    shadow_learn(  # pending only: a cancelled prediction (a no-show's) was for a pick-up that did not happen then
        scored=[tuple(getattr(r, c) for c in SCORED_COLUMNS) for r in rows if r.status == PredictionStatus.PENDING],
        actual=actual,
        at=timezone.now(),
    )
    if rows:
        with connection.cursor() as cursor:
            cursor.execute(_scored_sql(), [actual, actual, PredictionStatus.COMPLETED, booking.external_id])
    if current is None:
        return None
    error = actual - current.predicted_battery
    accuracy_record(prediction=current, actual=actual, day=at_day)
    return error


_UNSCORED_COLUMNS = (
    "calibration_key",
    "predicted_battery",
    "confidence_lower",
    "confidence_upper",
    "status",
    "is_current",
    "model_version",
    "prediction_method",
    *SCORED_COLUMNS,
)
_Unscored = namedtuple("_Unscored", _UNSCORED_COLUMNS)


@once
def _unscored_sql() -> str:
    """A booking's predictions not scored yet, the columns scoring reads, in the model's order (newest first): SQL
    built once, as the pick-up's other statements (docs/performance.md)."""
    qn = connection.ops.quote_name
    columns = ", ".join(qn(Prediction._meta.get_field(name).column) for name in _UNSCORED_COLUMNS)
    return (
        f"SELECT {columns} FROM {qn(Prediction._meta.db_table)} "
        f"WHERE {qn('booking_external_id')} = %s AND {qn('actual_battery')} IS NULL "
        f"ORDER BY {qn('predicted_at')} DESC, {qn('id')} DESC"
    )


@once
def _scored_sql() -> str:
    """Fill the actual level, the error and the completed status into a booking's predictions not scored yet."""
    qn = connection.ops.quote_name
    return (
        f"UPDATE {qn(Prediction._meta.db_table)} SET {qn('actual_battery')} = %s, "
        f"{qn('prediction_error')} = %s - {qn('predicted_battery')}, {qn('status')} = %s "
        f"WHERE {qn('booking_external_id')} = %s AND {qn('actual_battery')} IS NULL"
    )


def _current_of(booking: Booking, rows: list) -> Prediction | None:
    """The booking's current prediction, from its unscored rows (no query); read only if it was scored before."""
    row = next((r for r in rows if r.is_current), None)
    if row is None:
        return Prediction.objects.filter(booking_external_id=booking.external_id, is_current=True).first()
    return Prediction(
        predicted_battery=row.predicted_battery,
        confidence_lower=row.confidence_lower,
        confidence_upper=row.confidence_upper,
        model_version=row.model_version,
        prediction_method=row.prediction_method,
    )


def accuracy_record(*, prediction: Prediction, actual: float, day) -> None:
    """Add one scored prediction to its day's row of its model and method, creating the row on the day's first."""
    error = actual - prediction.predicted_battery
    inside = prediction.confidence_lower <= actual <= prediction.confidence_upper
    increments = AccuracyMetric.increments(error, inside)
    keys = [db_value(AccuracyMetric, "date", day), prediction.model_version, prediction.prediction_method]
    with connection.cursor() as cursor:
        cursor.execute(_accuracy_added_sql(tuple(increments)), [*keys, *increments.values()])


@lru_cache(maxsize=4)
def _accuracy_added_sql(names: tuple[str, ...]) -> str:
    """One statement, atomic: the day's row created with one prediction's increments (`names`), or those added to it.

    The ORM's get_or_create, then an UPDATE of F expressions, were up to three statements compiled on every pick-up;
    the unique (date, model, method) constraint is the conflict that makes it an addition.
    """
    qn = connection.ops.quote_name
    table = qn(AccuracyMetric._meta.db_table)
    keys = ("date", "model_version", "prediction_method")
    columns = ", ".join(qn(name) for name in (*keys, *names))
    added = ", ".join(f"{qn(name)} = {table}.{qn(name)} + excluded.{qn(name)}" for name in names)
    return (
        f"INSERT INTO {table} ({columns}) VALUES ({placeholders(len(keys) + len(names))}) "
        f"ON CONFLICT ({', '.join(qn(key) for key in keys)}) DO UPDATE SET {added}"
    )
