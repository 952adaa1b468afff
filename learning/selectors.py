"""Reads of learned patterns (the fleet prior, each car's and renter's effective rates), outcomes, and the model
registry (the list behind `GET /api/v1/models`, the champion in `model/info`, the latest drift checks)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

import numpy as np
from django.conf import settings
from django.db import connection
from django.db.models import Avg, Exists, F, OuterRef, Window
from django.db.models.functions import RowNumber
from django.utils import timezone

from bookings.models import BatteryReading, ReadingSource, Vehicle
from bookings.selectors import fleet_clock
from common.api.fields import iso
from common.process_cache import keep, kept
from common.rows import columns_of, instance, instances, placeholders, select_sql
from core.ema import shrink
from core.features import HISTORY, CarState, FeatureBook, Outcome, Reading, RenterState
from core.physics import (
    DEFAULT_CHARGE,
    DEFAULT_DRIVE,
    DEFAULT_DRIVE_PER_KM,
    DEFAULT_DRIVE_PER_KM_STD,
    DEFAULT_IDLE_DRAIN,
    FULL,
    Rates,
)
from learning.champion import champion_model
from learning.feature_cache import car_state, pattern_key, renter_states
from learning.models import BookingOutcome, DriftCheck, ModelStatus, ModelVersion, UserPattern, VehiclePattern

FLEET_PRIOR_CACHE_KEY = "learning:fleet_prior:v2"  # v2: (prior, fleet clock), not the prior alone

# A car with this many observations of a rate weighs its own estimate equally with the fleet's.
SHRINK_STRENGTH = 3.0
MIN_CHARGE_RATE = 0.5  # points per hour: a car that charges at all charges at least this fast


@dataclass(frozen=True)
class FleetPrior:
    """What a car with no history is assumed to do: the fleet's averages, or defaults at cold start.

    Defaults are those of a mid-size EV (about 55 kWh): parked drain 0.15 %/h, charging on
    7 kW at about 12 %/h, 9 %/h while driven in town, one return in three left plugged in.
    """

    idle_drain: float = DEFAULT_IDLE_DRAIN
    idle_std: float = 0.15
    charge: float = DEFAULT_CHARGE
    charge_std: float = 4.0
    drive: float = DEFAULT_DRIVE
    drive_std: float = 5.0
    plug_probability: float = 0.3  # share of returns left plugged in, every car (a car not known yet may have none)
    # Share of returns left plugged in on the cars seen charging: the renters' habit given a charger, which the
    # model's Monte Carlo draws from (`core.features.plug_probability`).
    plug_habit: float = 0.3
    cars: int = 0
    drive_per_km: float = DEFAULT_DRIVE_PER_KM
    drive_per_km_std: float = DEFAULT_DRIVE_PER_KM_STD
    # The charging rate that all but the slowest (1 - READINESS_RISK_THRESHOLD) of the cars seen charging reach:
    # what a plug-in deadline counts on for a car not yet seen charging (`deadline_charge_rate`).
    charge_low: float = DEFAULT_CHARGE


def fleet_prior() -> FleetPrior:
    """Average the learned car patterns, each rate over the cars that observed it (one query), and the slow end of
    their charging rates (a second)."""
    default = FleetPrior()
    with connection.cursor() as cursor:
        cursor.execute(_fleet_figures_sql())
        figures = dict(zip((name for name, *_ in _FLEET_FIGURES), cursor.fetchone(), strict=True))

    def pick(value: float | None, fallback: float) -> float:
        return fallback if value is None else value

    def pick_std(var: float | None, fallback: float) -> float:
        return fallback if not var else max(math.sqrt(var), fallback * 0.25)

    bookings = figures["bookings"] or 0
    chargeable = figures["chargeable_bookings"] or 0
    return FleetPrior(
        idle_drain=max(pick(figures["idle"], default.idle_drain), 0.0),
        idle_std=pick_std(figures["idle_var"], default.idle_std),
        charge=max(pick(figures["charge"], default.charge), 0.5),
        charge_std=pick_std(figures["charge_var"], default.charge_std),
        drive=max(pick(figures["drive"], default.drive), 0.0),
        drive_std=pick_std(figures["drive_var"], default.drive_std),
        plug_probability=shrink(
            (figures["charges"] or 0) / bookings if bookings else None, bookings, default.plug_probability, 10.0
        ),
        plug_habit=shrink(
            (figures["charges"] or 0) / chargeable if chargeable else None, chargeable, default.plug_habit, 10.0
        ),
        cars=figures["cars"] or 0,
        drive_per_km=max(pick(figures["per_km"], default.drive_per_km), 0.0),
        drive_per_km_std=pick_std(figures["per_km_var"], default.drive_per_km_std),
        charge_low=_charge_rates_low(default.charge_low),
    )


# The fleet's figures `fleet_prior` reads, one aggregate each: (name, function, column, only where this column > this).
_FLEET_FIGURES = (
    ("cars", "COUNT", "id", None),
    ("idle", "AVG", "avg_idle_drain_per_hour", ("idle_observations", 0)),
    ("idle_var", "AVG", "var_idle_drain_per_hour", ("idle_observations", 1)),
    ("charge", "AVG", "avg_charging_rate_per_hour", ("charge_observations", 0)),
    ("charge_var", "AVG", "var_charging_rate_per_hour", ("charge_observations", 1)),
    ("drive", "AVG", "avg_drain_rate_per_hour", ("drive_observations", 0)),
    ("drive_var", "AVG", "var_drain_rate_per_hour", ("drive_observations", 1)),
    ("per_km", "AVG", "avg_drain_rate_per_km", ("km_observations", 0)),
    ("per_km_var", "AVG", "var_drain_rate_per_km", ("km_observations", 1)),
    ("charges", "SUM", "total_charges", None),
    ("bookings", "SUM", "total_bookings", None),
    ("chargeable_bookings", "SUM", "total_bookings", ("total_charges", 0)),
)


@lru_cache(maxsize=1)
def _fleet_figures_sql() -> str:
    """`_FLEET_FIGURES` in one statement built once. A replay runs the fleet's clock faster than the prior's keep
    (`fleet_prior_cached`), and the ORM's twelve filtered aggregates were then compiled on every event."""
    qn = connection.ops.quote_name
    figures = []
    for _, function, column, only in _FLEET_FIGURES:
        value = qn(column) if only is None else f"CASE WHEN {qn(only[0])} > {int(only[1])} THEN {qn(column)} END"
        figures.append(f"{function}({value})")
    return f"SELECT {', '.join(figures)} FROM {qn(VehiclePattern._meta.db_table)}"


def _charge_rates_low(default: float) -> float:
    """The (1 - READINESS_RISK_THRESHOLD) quantile of the learned charging rates of the cars seen charging."""
    with connection.cursor() as cursor:
        cursor.execute(_charge_rates_sql())
        values = [rate for (rate,) in cursor.fetchall()]
    if not values:
        return default
    share = min(max(1.0 - settings.READINESS_RISK_THRESHOLD, 0.0), 1.0)
    return max(float(np.quantile(values, share)), MIN_CHARGE_RATE)


@lru_cache(maxsize=1)
def _charge_rates_sql() -> str:
    qn = connection.ops.quote_name
    rate = qn("avg_charging_rate_per_hour")
    return (
        f"SELECT {rate} FROM {qn(VehiclePattern._meta.db_table)} "
        f"WHERE {qn('charge_observations')} > 0 AND {rate} IS NOT NULL"
    )


def fleet_return_battery(default: float = 60.0) -> float:
    """The level renters usually leave cars at: where a car we never heard from probably is."""
    value = UserPattern.objects.aggregate(v=Avg("avg_return_battery"))["v"]
    return default if value is None else value


def fleet_prior_cached() -> FleetPrior:
    """`fleet_prior()`, recomputed at most every FLEET_PRIOR_CACHE_SECONDS per process, of the server's time and of
    the fleet's (`fleet_clock`), whichever passes first.

    The fleet average moves slowly (one outcome among hundreds of cars barely shifts it), and
    the aggregate over every car's pattern would otherwise run on every prediction. Live, the two clocks run
    together. A replayed stream (a month of a fleet sent in minutes, as a platform does when it first connects or
    as the benches do) runs the fleet's clock thousands of times faster: on the server's clock alone, the first
    weeks of the fleet would all be shrunk towards the average as it stood at the start (the cold-start defaults:
    charging at 12 %/h for a fleet whose cars charge at 2).
    """
    ttl = settings.FLEET_PRIOR_CACHE_SECONDS
    if ttl <= 0:
        return fleet_prior()
    clock = fleet_clock(now=timezone.now())
    cached = kept(FLEET_PRIOR_CACHE_KEY)
    if cached is not None:
        prior, at = cached
        if abs((clock - at).total_seconds()) <= ttl:
            return prior
    prior = fleet_prior()
    keep(FLEET_PRIOR_CACHE_KEY, (prior, clock), ttl)
    return prior


def _std(variance: float, count: int, prior_std: float) -> float:
    """A car's spread, shrunk towards the fleet's; one observation has no spread of its own."""
    own = math.sqrt(variance) if count > 1 else None
    return shrink(own, count - 1, prior_std, SHRINK_STRENGTH)


def vehicle_rates(pattern: VehiclePattern | None, prior: FleetPrior) -> Rates:
    """A car's effective rates: its EMA estimates shrunk towards the fleet while it has few bookings."""
    if pattern is None:
        return Rates(
            prior.idle_drain,
            prior.idle_std,
            prior.charge,
            prior.charge_std,
            prior.drive,
            prior.drive_std,
            prior.plug_probability,
        )
    p = pattern
    return Rates(
        idle_drain=max(shrink(p.avg_idle_drain_per_hour, p.idle_observations, prior.idle_drain, SHRINK_STRENGTH), 0.0),
        idle_std=_std(p.var_idle_drain_per_hour, p.idle_observations, prior.idle_std),
        charge=max(
            shrink(p.avg_charging_rate_per_hour, p.charge_observations, prior.charge, SHRINK_STRENGTH), MIN_CHARGE_RATE
        ),
        charge_std=_std(p.var_charging_rate_per_hour, p.charge_observations, prior.charge_std),
        drive=max(shrink(p.avg_drain_rate_per_hour, p.drive_observations, prior.drive, SHRINK_STRENGTH), 0.0),
        drive_std=_std(p.var_drain_rate_per_hour, p.drive_observations, prior.drive_std),
        plug_probability=shrink(p.charging_frequency, p.total_bookings, prior.plug_probability, SHRINK_STRENGTH),
        ceiling=FULL if p.charge_ceiling is None else p.charge_ceiling,
    )


def deadline_charge_rate(pattern: VehiclePattern | None, prior: FleetPrior) -> float:
    """The charging rate a plug-in deadline counts on: the lower of the car's own learned rate and that rate shrunk
    towards the slow end of the fleet's (`FleetPrior.charge_low`); that slow end alone for a car never seen charging.

    Why not the fleet's average: a deadline is not symmetric. Counting on a rate above the car's makes the deadline
    too late and the car is not ready; below it, the car is plugged in early and waits on the charger. A deadline
    aims at `READINESS_RISK_THRESHOLD`, so a car the service knows nothing of is given the rate that that share of
    the fleet's cars reach. The car's own rate is trusted downwards from its first charge, upwards as its charges
    add up.
    """
    if pattern is None or not pattern.charge_observations or pattern.avg_charging_rate_per_hour is None:
        return max(prior.charge_low, MIN_CHARGE_RATE)
    own = pattern.avg_charging_rate_per_hour
    shrunk = shrink(own, pattern.charge_observations, prior.charge_low, SHRINK_STRENGTH)
    return max(min(own, shrunk), MIN_CHARGE_RATE)


def deadline_charge_spread(rates: Rates, rate: float) -> float:
    """The relative spread of the charge a plug-in delivers at `rate`: the car's charging rate's sd (its own
    gap to gap, shrunk towards the fleet's) over that rate."""
    return rates.charge_std / rate if rate > 0 else 0.0


@dataclass(frozen=True)
class RenterRates:
    drive: float
    drive_std: float
    plug_probability: float


def renter_rates(user: UserPattern | None, car: Rates) -> RenterRates:
    """A renter's trip drain and plugging habit, shrunk towards the car's own rates.

    Trip drain depends on both renter and car; a renter's drain, measured across the cars
    they drove, is blended with the car's at most half and half.
    """
    if user is None:
        return RenterRates(car.drive, car.drive_std, car.plug_probability)
    weight = 0.5 * user.drive_observations / (user.drive_observations + SHRINK_STRENGTH)
    drive = (
        car.drive
        if user.avg_drain_rate_per_hour is None
        else ((1 - weight) * car.drive + weight * max(user.avg_drain_rate_per_hour, 0.0))
    )
    own_std = math.sqrt(user.var_drain_rate_per_hour) if user.drive_observations > 1 else car.drive_std
    return RenterRates(
        drive=drive,
        drive_std=(1 - weight) * car.drive_std + weight * own_std,
        plug_probability=shrink(user.charging_frequency, user.total_bookings, car.plug_probability, SHRINK_STRENGTH),
    )


def drain_per_km(pattern: VehiclePattern | None, user: UserPattern | None, prior: FleetPrior) -> tuple[float, float]:
    """The drain per km (points) of this car driven by this renter, and its spread: what turns a planned distance
    into the level a booking needs (readiness).

    The same cascade as the hourly rates: the car's EMA shrunk towards the fleet's per-km average (the default
    when no car has reported mileage) while it has few observations, then the renter's own per-km drain blended
    in, at most half and half (`renter_rates`).
    """
    rate, std = prior.drive_per_km, prior.drive_per_km_std
    if pattern is not None:
        rate = max(shrink(pattern.avg_drain_rate_per_km, pattern.km_observations, rate, SHRINK_STRENGTH), 0.0)
        std = _std(pattern.var_drain_rate_per_km, pattern.km_observations, std)
    if user is None or user.avg_drain_rate_per_km is None:
        return rate, std
    weight = 0.5 * user.km_observations / (user.km_observations + SHRINK_STRENGTH)
    own_std = math.sqrt(user.var_drain_rate_per_km) if user.km_observations > 1 else std
    return (1 - weight) * rate + weight * max(user.avg_drain_rate_per_km, 0.0), (1 - weight) * std + weight * own_std


def vehicle_pattern_for(vehicle: Vehicle) -> VehiclePattern | None:
    """The car's learned pattern; no query when it was read with the car (`vehicle_lock(with_pattern=True)`)."""
    relation = Vehicle.pattern.related
    if relation.is_cached(vehicle):
        return relation.get_cached_value(vehicle)
    return instance(VehiclePattern, _vehicle_pattern_sql(), [vehicle.pk])  # every event's cascade reads it


@lru_cache(maxsize=1)
def _vehicle_pattern_sql() -> str:
    return select_sql(VehiclePattern, f"{connection.ops.quote_name('vehicle_id')} = %s")


def vehicle_pattern_stored(*, vehicle_id: int) -> VehiclePattern | None:
    """The car's pattern as stored now, never a copy read with the car: `booking.ended`'s answer reads what the
    outcome just taught it (SQL built once)."""
    return instance(VehiclePattern, _vehicle_pattern_sql(), [vehicle_id])


def outcome_of(*, booking_id: int) -> BookingOutcome | None:
    """The booking's recorded outcome, if any (SQL built once)."""
    return instance(BookingOutcome, _outcome_sql(), [booking_id])


@lru_cache(maxsize=1)
def _outcome_sql() -> str:
    return select_sql(BookingOutcome, f"{connection.ops.quote_name('booking_id')} = %s")


def pattern_pickup_lessons(*, vehicle: Vehicle) -> int:
    """How many times the car's pattern has learned from a pick-up: parked gaps learned plus error corrections.

    Read before and after a pick-up is learned from, it tells whether that pick-up moved the pattern (one query;
    never from the car's cached pattern, which the cascade reads).
    """
    with connection.cursor() as cursor:
        cursor.execute(_pickup_lessons_sql(), [vehicle.pk])
        counts = cursor.fetchone()
    return sum(counts) if counts else 0


@lru_cache(maxsize=1)
def _pickup_lessons_sql() -> str:
    """`pattern_pickup_lessons`' counts, SQL built once: it is read twice on every pick-up."""
    qn = connection.ops.quote_name
    counts = ", ".join(qn(name) for name in ("idle_observations", "charge_observations", "error_corrections"))
    return (
        f"SELECT {counts} FROM {qn(VehiclePattern._meta.db_table)} WHERE {qn('vehicle_id')} = %s "
        f"ORDER BY {qn('id')} LIMIT 1"
    )


def user_patterns_for(user_ids: Iterable[str]) -> dict[str, UserPattern]:
    """The renters' learned patterns by user id (one query; SQL built once per count of renters, since every
    prediction reads them and the ORM compiled the same filter each time)."""
    ids = sorted({uid for uid in user_ids if uid})
    if not ids:
        return {}
    return {p.user_id: p for p in instances(UserPattern, _user_patterns_sql(len(ids)), ids)}


@lru_cache(maxsize=32)
def _user_patterns_sql(count: int) -> str:
    qn = connection.ops.quote_name
    table = qn(UserPattern._meta.db_table)
    return f"SELECT {columns_of(UserPattern)} FROM {table} WHERE {qn('user_id')} IN ({placeholders(count)})"


def _outcome(row: dict) -> Outcome:
    return Outcome(
        vehicle_id=row["vehicle__external_id"],
        user_id=row["user_id"],
        start=row["starts_at"],
        end=row["ends_at"],
        battery_at_start=row["battery_at_start"],
        battery_at_end=row["battery_at_end"],
        charging_at_end=row["charging_at_end"],
        car_chargeable=row.get("car_chargeable"),
    )


_OUTCOME_FIELDS = (
    "vehicle__external_id",
    "user_id",
    "starts_at",
    "ends_at",
    "battery_at_start",
    "battery_at_end",
    "charging_at_end",
)


_UNREAD: Any = object()  # `feature_book_for`'s pattern not given: read it


def feature_book_for(
    *,
    vehicle: Vehicle,
    user_ids: Iterable[str],
    users: dict[str, UserPattern] | None = None,
    pattern: VehiclePattern | None = _UNREAD,
) -> FeatureBook:
    """The model features of a car and of its renters, replayed from their last outcomes.

    The car's state comes from its own outcomes, each renter's from theirs on any car, exactly
    as training builds them (`core.features`). Each is kept per process until its pattern learns another
    outcome (`learning.feature_cache`), so a car and renters already priced cost no query but their patterns'
    (none for the car's when it was read with the car or `pattern` brings it; none for the renters' when `users`
    brings them). A car or renter without a pattern has no outcome and gets the empty state, so `users`, when given,
    must hold the pattern of every renter of `user_ids` that has one.
    """
    ids = sorted({uid for uid in user_ids if uid})
    if users is None:
        users = user_patterns_for(ids)
    book = FeatureBook()
    car_key = pattern_key(vehicle_pattern_for(vehicle) if pattern is _UNREAD else pattern)
    # No pattern, no outcome: each outcome's own signal makes its car's and renter's patterns in its transaction
    # (`learning.receivers`), so what has none starts from the empty state without asking the database.
    car = CarState() if car_key is None else car_state(car_key, lambda: _car_replayed(vehicle))
    book.cars[vehicle.external_id] = car
    known = {uid: key for uid in ids if (key := pattern_key(users.get(uid))) is not None}
    book.renters = {uid: RenterState() for uid in ids if uid not in known}
    if known:
        book.renters |= renter_states(known, _renters_replayed)
    return book


def _car_replayed(vehicle: Vehicle) -> CarState:
    """The car's state after its last HISTORY outcomes (one query)."""
    rows = BookingOutcome.objects.filter(vehicle=vehicle).order_by("-ends_at").values(*_OUTCOME_FIELDS)[:HISTORY]
    book = FeatureBook()
    for row in reversed(list(rows)):
        book.observe(_outcome(row), learn_renter=False)
    return book.car(vehicle.external_id)


def _renters_replayed(ids: list[str]) -> dict[str, RenterState]:
    """Each renter's state after their last HISTORY outcomes on any car (one query).

    Each outcome carries whether its car had been seen charging by then, by anyone: a renter's plugging habit counts
    only returns to cars that can charge (`core.features`), and a replay of the renter's outcomes alone would know a
    car only from this renter's returns, where training knows it from the whole fleet's.
    """
    charged_by_then = BookingOutcome.objects.filter(
        vehicle=OuterRef("vehicle"), charging_at_end=True, ends_at__lte=OuterRef("ends_at")
    )
    ranked = (
        BookingOutcome.objects.filter(user_id__in=ids)
        .annotate(car_chargeable=Exists(charged_by_then))
        .annotate(rank=Window(RowNumber(), partition_by=[F("user_id")], order_by=F("ends_at").desc()))
        .filter(rank__lte=HISTORY)
        .values(*_OUTCOME_FIELDS, "car_chargeable")
    )
    book = FeatureBook()
    for row in sorted(ranked, key=lambda r: r["ends_at"]):
        book.observe(_outcome(row))
    return book.renters


def outcomes_all() -> list[Outcome]:
    """Every recorded outcome in order of return: what `retrain` learns from."""
    rows = BookingOutcome.objects.order_by("ends_at", "id").values(*_OUTCOME_FIELDS)
    return [_outcome(row) for row in rows.iterator(chunk_size=5000)]


# Readings that can fall inside a parked gap; those at a pick-up or a return are the gap's own ends.
_MID_GAP_SOURCES = (ReadingSource.BOOKING_CREATED, ReadingSource.PREDICT_REQUEST)


def readings_mid_gap(*, until: datetime | None = None) -> list[Reading]:
    """The levels reported between bookings (telematics on creation, real-time predictions), oldest first."""
    rows = BatteryReading.objects.filter(source__in=_MID_GAP_SOURCES)
    if until is not None:
        rows = rows.filter(recorded_at__lte=until)
    values = rows.order_by("recorded_at", "id").values_list("vehicle__external_id", "recorded_at", "level")
    return [Reading(vehicle_id, at, level) for vehicle_id, at, level in values.iterator(chunk_size=5000)]


# --- the model registry ---------------------------------------------------------------------------------------

MODELS_LIMIT_DEFAULT = 50
MODELS_LIMIT_MAX = 500


def model_version_body(row: ModelVersion) -> dict:
    """One registry row as the API shows it: what the model learned from, how it scored, how it was built.

    The artifact's path stays internal (it is a file on the worker's disk); its checksum is shown so
    staff can tell two deployments serve the same trees.
    """
    return {
        "version": row.version,
        "kind": row.kind,
        "status": row.status,
        "source": row.source,
        "trained_at": iso(row.trained_at),
        "promoted_at": iso(row.promoted_at),
        "window_start": iso(row.window_start),
        "window_end": iso(row.window_end),
        "training_rows": row.training_rows,
        "features": row.features,
        "hyperparameters": row.hyperparameters,
        "holdout_metrics": row.holdout_metrics,
        "champion_metrics": row.champion_metrics,
        "calibration": row.calibration,
        "training_seconds": row.training_seconds,
        "artifact_sha256": row.artifact_sha256,
        "notes": row.notes,
    }


def model_versions_list(*, limit: int = MODELS_LIMIT_DEFAULT) -> dict:
    """The newest `limit` registered models (two queries: the count and the page).

    A registry grows by one row a week, so a bounded list is enough; `total` says how many exist.
    """
    limit = max(1, min(limit, MODELS_LIMIT_MAX))
    rows = list(ModelVersion.objects.order_by("-trained_at", "-id")[:limit])
    return {
        "models": [model_version_body(row) for row in rows],
        "total": ModelVersion.objects.count(),
        "count": len(rows),
    }


def model_champion() -> tuple[ModelVersion | None, bool]:
    """The registry's champion (None when none is registered) and whether its model actually serves.

    A champion whose artifact is missing or fails its checksum is registered but not serving: the
    pattern cascade answers instead (see `learning.champion`).
    """
    row = ModelVersion.objects.filter(status=ModelStatus.CHAMPION).first()
    model = champion_model() if row is not None else None
    return row, model is not None and model.version == row.version


def drift_latest_by_version() -> dict[str, DriftCheck]:
    """The latest drift check of every model version that has one, by version (one query).

    Each check's `model_version` is loaded with it; its `feature_reference` holds the bins that the
    check's recent `shares` are set against.
    """
    latest = (
        DriftCheck.objects.annotate(
            newest=Window(
                RowNumber(), partition_by=[F("model_version_id")], order_by=[F("checked_at").desc(), F("id").desc()]
            )
        )
        .filter(newest=1)
        .select_related("model_version")
    )
    return {check.model_version.version: check for check in latest}
