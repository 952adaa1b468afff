"""Staff pages at scale: server time of the dashboard and the admin changelists with a year of data, on Postgres.

The question (issue 5): do the staff pages stay under 500 ms of server time with a year of data for 500 cars?
A benchmark, not a test: it prints its figures (medians; the machine is noisy).

1. Seeds a Postgres database (default `batterypred_bench_pages`; `--reuse` keeps one already seeded, which a
   database comment marks) with --days (365) of --cars (500) cars from the project's simulator
   (`core.simulation`, its clock ending now, the next 7 days scheduled). Every row is what the service would
   have written, built with its builders: bookings, readings and outcomes (`learning.services.outcome_fields`);
   an InboundEvent with its body, digest and response for every call; predictions where the service makes them
   (at creation, on the car's previous return, at each real-time predict; one `is_current`; ids from
   `prediction_id_new`; errors that grow with the horizon, intervals covering ~95 %); callbacks built by
   `callbacks.services.callback_body` with their attempts (mostly delivered, some pending or failed); a year's
   model registry (a bootstrap model, weekly challengers, two promoted), weekly drift checks, daily accuracy
   sums (`AccuracyMetric.increments`) and the cars' and renters' patterns. No artifact file is written, so the
   pattern cascade serves, as the models page says. Rows go in with bulk_create (the big tables' plain indexes
   dropped and built again after), then `VACUUM ANALYZE`.
2. Times every page in-process with Django's test Client as a staff superuser, DJANGO_DEBUG=0: --warmup untimed
   requests (the first reported as "first"), one under CaptureQueriesContext (queries, SQL time, the slowest),
   then --runs (7) timed; median and max. Pages: the dashboard's (accuracy by default, for the busiest car and
   for the year; the busiest car's timeline; models; deliveries; operations) and the admin changelists staff
   use, plain and searched the way staff look for one booking. A page not answering 200 is an error (exit 1);
   a median over --target-ms (500) is SLOW. `--explain` runs EXPLAIN (ANALYZE, BUFFERS) on the slowest queries.

    make bench-pages                                    # seed and time every page
    make bench-pages BENCH_ARGS=--reuse                 # time again on the database seeded last time
    .venv/bin/python -m bench.pages --cars 50 --days 60 --seed-only     # a small database, no timing
    .venv/bin/python -m bench.pages --reuse --url '/admin/bookings/booking/?q={booking}' --url /admin/
        (placeholders: {car} the busiest car, {booking} one of its recent bookings, {today}, {year_ago})

The database is kept (for --reuse); `--drop` drops it at the end.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import os
import random
import statistics
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from bench.common import (
    POSTGRES,
    BenchError,
    database_create,
    database_drop,
    database_exists,
    database_name,
    django_setup,
    machine_info,
    manage,
    parser_for,
    server_env,
    text_table,
    write_json,
)
from core.simulation.fleet import FleetConfig, SimBooking, Simulation, simulate

DEFAULT_DATABASE_URL = POSTGRES + "batterypred_bench_pages"
TARGET_MS = 500.0

FUTURE_DAYS = 7
RENTERS_PER_CAR = 2
ANOMALOUS_CARS = 0.04  # cars whose recent idle drain is far above their baseline
CALLBACK_FAILED = 0.01
CALLBACK_PENDING_RECENT = 0.06  # of the callbacks written in the last 6 hours
CALLBACK_URL = "http://laravel.internal/api/ml/predictions-updated"
STAFF_USERNAME = "bench-staff"
SEED_MARKER = "batterypred bench/pages.py seed"  # the database comment written once seeding has finished
BATCH = 5000  # rows per bulk_create
PART_CARS = 25  # cars simulated together (the parts run in parallel)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = parser_for(__doc__)
    add = parser.add_argument
    add("--database-url", default=DEFAULT_DATABASE_URL, help="Postgres database to (re)create and use")
    add("--reuse", action="store_true", help="use the database as it is when it is already seeded")
    add("--drop", action="store_true", help="drop the database at the end (kept by default, for --reuse)")
    add("--seed-only", action="store_true", help="create and seed the database, time nothing")
    add("--cars", type=int, default=500, help="fleet size (default 500)")
    add("--days", type=int, default=365, help="days of history (default 365), plus 7 days of scheduled bookings")
    add("--renters", type=int, default=0, help=f"renters (default {RENTERS_PER_CAR} per car)")
    add("--seed", type=int, default=42, help="simulator seed of the fleet and random seed of the rest")
    add("--warmup", type=int, default=2, help="untimed requests per page first (default 2)")
    add("--runs", type=int, default=7, help="timed requests per page (default 7)")
    add("--target-ms", type=float, default=TARGET_MS, help="a median above this is SLOW (default 500)")
    add("--url", action="append", default=[], help="time this URL instead of the default pages (repeatable)")
    add("--explain", action="store_true", help="EXPLAIN ANALYZE the slowest queries of every page")
    add("--explain-ms", type=float, default=50.0, help="only queries at least this slow (default 50 ms)")
    add("--json", type=Path, dest="json_path", help="write the figures to this JSON file")
    args = parser.parse_args(argv)
    if args.cars < 2 or args.days < 14 or args.runs < 1 or args.warmup < 0:
        parser.error("--cars >= 2, --days >= 14, --runs >= 1 and --warmup >= 0")
    args.renters = args.renters or RENTERS_PER_CAR * args.cars
    return args


def setup(database_url: str) -> None:
    """Django in this process on the bench database, with the settings gunicorn would run with."""
    django_setup(server_env(database_url))
    # No model artifact is written: the champion row exists but is not served (the pattern cascade answers),
    # which the models page shows; its one "cannot be loaded" error is noise here.
    logging.getLogger("learning.champion").setLevel(logging.CRITICAL)


# --- SQL for the load ---------------------------------------------------------------------------------------


def identity_reset(cursor, model) -> None:
    """Move the id sequence past the ids the seed chose itself."""
    table, pk = model._meta.db_table, model._meta.pk.column
    cursor.execute(
        f"SELECT setval(pg_get_serial_sequence('\"{table}\"', '{pk}'), "
        f'(SELECT coalesce(max({pk}), 0) + 1 FROM "{table}"), false)'
    )


def indexes_drop(cursor, tables: list[str]) -> list[str]:
    """Drop the plain (non-constraint, non-primary) indexes of `tables`; return their definitions."""
    cursor.execute(
        """
        SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid)
        FROM pg_index i JOIN pg_class t ON t.oid = i.indrelid
        WHERE t.relname = ANY(%s) AND NOT i.indisprimary
          AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)
        """,
        [tables],
    )
    found = cursor.fetchall()
    for name, _ in found:
        cursor.execute(f"DROP INDEX {name}")
    return [definition for _, definition in found]


# --- the model registry of a year --------------------------------------------------------------------------------


@dataclass
class Era:
    """A model version and the time from which it served predictions."""

    version: str
    since: datetime
    error_scale: float  # how good it was: scales the prediction errors of its era


def _figures(rng: random.Random, rows: int, mae: float) -> dict[str, float]:
    """One segment's figures, in the shape of learning.training.evaluate."""
    coverage, width = round(rng.uniform(0.935, 0.962), 4), round(mae * rng.uniform(4.6, 5.4), 3)
    return {"rows": rows, "mae": round(mae, 3), "coverage_95": coverage, "width_95": width}


def _evaluation(rng: random.Random, rows: int, mae: float) -> dict[str, Any]:
    """learning.training.evaluate's shape: per segment kind, then over both."""
    out = {"gap": _figures(rng, rows, mae * rng.uniform(0.7, 0.9)), "trip": _figures(rng, rows, mae * 1.2)}
    within = round(min(0.99, 0.97 - mae / 60 + rng.uniform(-0.01, 0.01)), 4)
    out |= {"rows": 2 * rows, "mae": round(mae, 3), "bias": round(rng.uniform(-0.4, 0.4), 3), "within_10": within}
    return out | {"coverage_95": round(rng.uniform(0.94, 0.958), 4)}


def _shares(rng: random.Random, bins: int = 10) -> list[float]:
    weights = [rng.uniform(0.6, 1.4) for _ in range(bins)]
    return [round(w / sum(weights), 4) for w in weights]


def _reference(rng: random.Random, window_end: datetime, features: dict) -> dict:
    """learning.drift.feature_reference's shape: decile edges and shares of every gap and trip input."""
    start, end = (window_end - timedelta(days=28)).isoformat(), window_end.isoformat()
    reference: dict[str, Any] = {"format": 1, "bins": "deciles", "decimals": 2, "days": 28}
    reference |= {"window_start": start, "window_end": end}
    for kind in ("gap", "trip"):
        columns = {
            name: {"edges": sorted(round(rng.uniform(0, 100), 2) for _ in range(9)), "shares": _shares(rng)}
            | {"missing": round(rng.uniform(0, 0.05), 4)}
            for name in features[kind]
        }
        reference[kind] = {"rows": rng.randint(8_000, 12_000), "features": columns}
    return reference


def registry_seed(rng: random.Random, t0: datetime, now: datetime, outcomes_per_day: float) -> list[Era]:
    """A synthetic bootstrap model, then a weekly retrain on outcomes; two challengers were promoted.

    Returns the serving eras: the pattern cascade first, then each promoted model from its promotion.
    """
    from core.features import GAP_FEATURES, TRIP_FEATURES
    from core.gbm import DEFAULT_PARAMS, DEFAULT_ROUNDS, QUANTILES
    from learning.models import ModelStatus, ModelVersion
    from learning.training import model_version_new
    from predictions.services import MODEL_VERSION

    features = {"gap": GAP_FEATURES, "trip": TRIP_FEATURES, "quantiles": list(QUANTILES)}
    hyper = {**DEFAULT_PARAMS, "rounds": DEFAULT_ROUNDS}

    def version(source: str, trained: datetime, start: datetime, end: datetime, rows: int, **fields) -> ModelVersion:
        name = model_version_new(source, trained)
        scales = {"gap": round(rng.uniform(0.9, 1.3), 4), "trip": round(rng.uniform(0.9, 1.3), 4)}
        fields |= {"artifact_path": f"{name}.json", "artifact_sha256": hashlib.sha256(name.encode()).hexdigest()}
        fields |= {"feature_reference": _reference(rng, end, features), "hyperparameters": hyper, "features": features}
        fields |= {"training_seconds": round(40 + rows / 4000 * rng.uniform(0.8, 1.2), 2), "calibration": scales}
        rows_ = {"gap": rows, "trip": rows}
        return ModelVersion(
            version=name,
            source=source,
            trained_at=trained,
            window_start=start,
            window_end=end,
            training_rows=rows_,
            **fields,
        )

    boot_at = t0 + (now - t0) * 0.10
    holdout = {"gap": _figures(rng, 9_150, 4.1), "trip": _figures(rng, 8_700, 6.3)}
    notes = "bootstrap model trained on a simulated fleet"
    boot = version(
        "synthetic:42",
        boot_at - timedelta(minutes=3),
        boot_at - timedelta(days=120),
        boot_at - timedelta(days=1),
        60_000,
        promoted_at=boot_at,
        holdout_metrics=holdout,
        notes=notes,
    )
    rows, eras = [boot], [Era(MODEL_VERSION, t0 - timedelta(days=30), 1.25), Era(boot.version, boot_at, 1.1)]
    promote_at, champion_mae = [t0 + (now - t0) * 0.45, t0 + (now - t0) * 0.80], 5.2
    week = boot_at + timedelta(days=7)
    while week < now - timedelta(hours=1):
        outcomes = int(outcomes_per_day * (week - t0).total_seconds() / 86400)
        promoted = bool(promote_at) and week >= promote_at[0]
        mae = champion_mae * (rng.uniform(0.88, 0.93) if promoted else rng.uniform(1.0, 1.08))
        challenger = _evaluation(rng, outcomes // 5, mae)
        challenger["calibration"] = {"gap": _figures(rng, outcomes // 35, mae * 0.8)}
        challenger["calibration"]["trip"] = _figures(rng, outcomes // 35, mae * 1.2)
        notes = f"challenger MAE {mae:.3f} {'' if promoted else 'not '}below champion's {champion_mae:.3f}"
        at = week + timedelta(minutes=20) if promoted else None
        rows.append(
            version(
                "outcomes",
                week,
                t0,
                week - (week - t0) * 0.2,
                outcomes,
                promoted_at=at,
                notes=notes,
                holdout_metrics=challenger,
                champion_metrics=_evaluation(rng, outcomes // 5, champion_mae),
            )
        )
        if promoted:
            promote_at.pop(0)
            champion_mae = mae
            eras.append(Era(rows[-1].version, at, 1.0 if len(eras) == 2 else 0.92))
        week += timedelta(days=7)
    promoted_versions = {e.version for e in eras[1:]}
    for row in rows:
        row.status = ModelStatus.RETIRED if row.version in promoted_versions else ModelStatus.CHALLENGER
    rows[[r.version for r in rows].index(eras[-1].version)].status = ModelStatus.CHAMPION
    ModelVersion.objects.bulk_create(rows)
    return eras


def drift_seed(rng: random.Random, eras: list[Era], now: datetime) -> int:
    """The weekly drift check of each serving model."""
    from core.features import GAP_FEATURES, TRIP_FEATURES
    from learning.models import DriftCheck, ModelVersion

    unscored = {"month", "car_gaps", "car_trips", "renter_trips"}
    thresholds = {"psi_warn": 0.1, "psi_drift": 0.25, "min_rows": 200, "unscored": sorted(unscored)}

    def judged(psi: float) -> str:
        return "ok" if psi < 0.1 else "warn" if psi < 0.25 else "drift"

    checks = []
    for era, following in zip(eras[1:], [*eras[2:], None], strict=True):
        model = ModelVersion.objects.get(version=era.version)
        at, until = era.since + timedelta(days=7), following.since if following else now
        while at < until:
            features: dict[str, dict] = {"gap": {}, "trip": {}}
            for kind, names in (("gap", GAP_FEATURES), ("trip", TRIP_FEATURES)):
                for name in names:
                    psi, missing = round(rng.expovariate(1 / 0.04), 4), round(rng.uniform(0, 0.05), 4)
                    figures = {"psi": psi, "status": judged(psi), "scored": name not in unscored}
                    features[kind][name] = figures | {"shares": _shares(rng), "missing": missing}
            scored = [(f["psi"], f"{k}.{n}") for k in features for n, f in features[k].items() if f["scored"]]
            worst = max(scored)
            rows = {"gap": 2_300 + rng.randint(0, 300), "trip": 2_400 + rng.randint(0, 300)}
            checks.append(
                DriftCheck(
                    model_version=model,
                    checked_at=at,
                    window_start=at - timedelta(days=7),
                    window_end=at,
                    status=judged(worst[0]),
                    outcomes=2_400 + rng.randint(0, 400),
                    rows=rows,
                    max_psi=worst[0],
                    worst_feature=worst[1],
                    features=features,
                    thresholds=thresholds,
                )
            )
            at += timedelta(days=7)
    DriftCheck.objects.bulk_create(checks)
    return len(checks)


# --- seeding ----------------------------------------------------------------------------------------------------

STATUS_AFTER = {"created": "scheduled", "modified": "scheduled", "started": "active", "ended": "completed"}
STATUS_AFTER["cancelled"] = "cancelled"


@dataclass
class SeedReport:
    now: str
    window_start: str
    seconds: float = 0.0
    steps: list[dict[str, Any]] = field(default_factory=list)


@contextmanager
def stored_times(models: list) -> Iterator[None]:
    """Let the seed write `auto_now` and `auto_now_add` fields itself: a year of history, not the moment of the load."""
    fields = [
        f
        for m in models
        for f in m._meta.concrete_fields
        if getattr(f, "auto_now", False) or getattr(f, "auto_now_add", False)
    ]
    saved = [(f, f.auto_now, f.auto_now_add) for f in fields]
    for f in fields:
        f.auto_now = f.auto_now_add = False
    try:
        yield
    finally:
        for f, auto_now, auto_now_add in saved:
            f.auto_now, f.auto_now_add = auto_now, auto_now_add


def booking_status(b: SimBooking, t: float) -> str:
    if b.cancelled and b.cancelled_at <= t:
        return "cancelled"
    return "completed" if b.actual_end <= t else "active" if b.actual_start <= t else "scheduled"


class Seeder:
    """Simulates the fleet, builds every row from it with the project's builders, and bulk-inserts them."""

    def __init__(self, config: argparse.Namespace, now: datetime) -> None:
        self.config, self.now = config, now
        self.t0 = (now - timedelta(days=config.days)).replace(minute=0)
        self.report = SeedReport(now=now.isoformat(), window_start=self.t0.isoformat())
        self.rng = random.Random(config.seed)

    def step(self, name: str, run) -> Any:
        started = time.perf_counter()
        result = run()
        seconds = time.perf_counter() - started
        rows = result if isinstance(result, int) else len(result)
        self.report.steps.append({"step": name, "rows": rows, "seconds": round(seconds, 2)})
        print(f"  {name:<44} {rows:>10,} rows {seconds:7.1f} s", flush=True)
        return result

    def insert(self, name: str, model, rows: list) -> list:
        return self.step(name, lambda: model.objects.bulk_create(rows, batch_size=BATCH))

    def run(self) -> SeedReport:
        from django.db import connection

        from bookings.models import BatteryReading, Booking, InboundEvent, Vehicle
        from callbacks.models import CallbackAttempt, CallbackItem, CallbackOutbox, EndpointCircuit
        from learning.models import (
            AccuracyMetric,
            BookingOutcome,
            DriftCheck,
            ModelVersion,
            UserPattern,
            VehiclePattern,
        )
        from predictions.models import Prediction

        started = time.perf_counter()
        c = self.config
        print(
            f"seeding {c.cars} cars, {c.renters} renters, {c.days} days ({self.t0:%Y-%m-%d} .. "
            f"{self.now:%Y-%m-%d %H:%M} UTC) + {FUTURE_DAYS} days scheduled",
            flush=True,
        )
        self.step("fleet simulated (core.simulation), bookings", lambda: self.simulate(c.cars, c.renters))
        big = [Booking, InboundEvent, BatteryReading, BookingOutcome, Prediction, CallbackOutbox, CallbackAttempt]
        models = [*big, Vehicle, AccuracyMetric, UserPattern, VehiclePattern, CallbackItem, DriftCheck, ModelVersion]
        with connection.cursor() as cursor, stored_times(models):
            cursor.execute("SET maintenance_work_mem = '512MB'")
            cursor.execute("SET synchronous_commit = off")
            # Building an index once is far cheaper than growing it row by row: the big tables' plain indexes
            # (unique constraints stay) are dropped for the load and created again from their definitions.
            definitions = indexes_drop(cursor, [m._meta.db_table for m in big])
            sim = self.sim
            completed = sum(booking_status(b, sim.hours(self.now)) == "completed" for b in sim.bookings)
            eras = registry_seed(self.rng, self.t0, self.now, completed / c.days)
            self.report.steps.append({"step": "model registry", "rows": len(eras)})
            self.step("drift checks", lambda: drift_seed(self.rng, eras, self.now))
            self.load(sim, eras)
            EndpointCircuit.objects.create(endpoint=CALLBACK_URL)
            for model in (Vehicle, Booking, InboundEvent, Prediction):
                identity_reset(cursor, model)
            self.step(f"indexes ({len(definitions)}, created again)", lambda: [cursor.execute(d) for d in definitions])
        connection.close()  # the session settings above must not leak into the timed requests
        with connection.cursor() as cursor:
            self.step("VACUUM ANALYZE", lambda: cursor.execute("VACUUM (ANALYZE)") and 0)
            self.report.seconds = round(time.perf_counter() - started, 1)
            marker = json.dumps({SEED_MARKER: {"cars": c.cars, "days": c.days, "now": self.now.isoformat()}})
            name = connection.settings_dict["NAME"]
            cursor.execute(f"""COMMENT ON DATABASE "{name}" IS '{marker.replace("'", "''")}'""")
        return self.report

    def simulate(self, cars: int, renters: int) -> list[SimBooking]:
        """The fleet, simulated in parts of PART_CARS cars on every core (seeds --seed, --seed + 1, ...)."""
        parts, days, renters_so_far = [], self.config.days + FUTURE_DAYS, 0
        for k, first in enumerate(range(0, cars, PART_CARS)):
            n = min(PART_CARS, cars - first)
            part = FleetConfig(cars=n, renters=max(1, renters * n // cars), days=days, seed=self.config.seed + k)
            parts.append(replace(part, epoch=self.t0, first_car=first, first_renter=renters_so_far))
            renters_so_far += part.renters
        with ProcessPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
            sims = list(pool.map(simulate, parts))
        one, every = sims[0], [s.calls for s in sims]
        self.sim = replace(one, cars=[c for s in sims for c in s.cars], bookings=[b for s in sims for b in s.bookings])
        self.sim.trajectories = {car: t for s in sims for car, t in s.trajectories.items()}
        self.sim.calls = sorted((call for calls in every for call in calls), key=lambda call: call.at)
        return self.sim.bookings

    def load(self, sim: Simulation, eras: list[Era]) -> None:
        """Every row of the year, in the order the service would have written them, with the project's shapes."""
        from bookings.models import BatteryReading, Booking, InboundEvent, Vehicle
        from events.services import body_digest
        from learning.models import BookingOutcome
        from predictions.models import Prediction

        now_h, rng = sim.hours(self.now), self.rng
        vehicles = {}
        for i, car in enumerate(sim.cars):
            created = self.t0 - timedelta(days=60) + timedelta(minutes=i)
            vehicles[car.car_id] = Vehicle(id=i + 1, external_id=car.car_id, created_at=created)
        self.insert("vehicles", Vehicle, list(vehicles.values()))
        known = sorted((b for b in sim.bookings if b.created <= now_h), key=lambda b: (b.created, b.booking_id))
        bookings = {b.booking_id: self.booking(sim, b, pk, vehicles, now_h) for pk, b in enumerate(known, start=1)}
        self.insert("bookings", Booking, list(bookings.values()))

        calls = [call for call in sim.calls if call.at <= self.now and call.kind != "predict"]
        events = {(call.booking_id, call.kind): pk for pk, call in enumerate(calls, start=1)}
        predictions = self.predictions(sim, known, bookings, events, eras, now_h)
        by_event: dict[int, list] = defaultdict(list)
        for p in predictions:
            if p.trigger == "booking.ended":
                by_event[p.trigger_event_id].append(p)
        current = {p.booking_external_id: p for p in predictions if p.is_current}
        creation = {p.booking_external_id: p for p in predictions if p.trigger == "booking.created"}
        rows, drains = [], defaultdict(list)
        for pk, call in enumerate(calls, start=1):
            b = bookings[call.booking_id]
            if call.kind == "ended" and (hours := (b.actual_end - b.actual_start).total_seconds() / 3600) >= 0.1:
                drains[call.vehicle_id].append((b.battery_at_start - b.battery_at_end) / hours)
            own = creation.get(call.booking_id) if call.kind == "created" else current.get(call.booking_id)
            response = self.response(call.kind, b, own, by_event.get(pk, []), drains[call.vehicle_id])
            rows.append(
                InboundEvent(
                    id=pk,
                    event_type=f"booking.{call.kind}",
                    booking_external_id=call.booking_id,
                    vehicle=vehicles[call.vehicle_id],
                    idempotency_key=None,
                    body_hash=body_digest(call.body),
                    body=call.body,
                    response=response,
                    received_at=call.at,
                    duplicates=1 + (rng.random() < 0.2) if rng.random() < 0.01 else 0,
                )
            )
        self.insert("inbound events", InboundEvent, rows)
        self.insert("predictions", Prediction, predictions)
        self.insert("battery readings", BatteryReading, self.readings(sim, bookings, vehicles))
        outcomes = [self.outcome(b) for b in bookings.values() if b.status == "completed"]
        self.insert("booking outcomes", BookingOutcome, outcomes)
        self.accuracy(predictions, bookings)
        self.callbacks(sim, eras, predictions, by_event, calls, vehicles)
        self.patterns(sim, outcomes, vehicles)

    def booking(self, sim: Simulation, b: SimBooking, pk: int, vehicles: dict, now_h: float):
        from bookings.models import Booking

        status, (start, end), when = booking_status(b, now_h), b.times_at(now_h), sim.when
        row = Booking(id=pk, external_id=b.booking_id, vehicle=vehicles[b.car.car_id], user_id=b.renter.user_id)
        row.status, row.scheduled_start, row.scheduled_end, row.created_at = (
            status,
            when(start),
            when(end),
            when(b.created),
        )
        if status in ("active", "completed"):
            row.actual_start, row.battery_at_start = when(b.actual_start), b.battery_at_start
            row.mileage_at_start = b.mileage_at_start
        if status == "completed":
            row.actual_end, row.battery_at_end = when(b.actual_end), b.battery_at_end
            row.charging_at_end, row.mileage_at_end = b.charging_at_end, round(b.mileage_at_start + b.km, 1)
        if status == "cancelled":
            row.cancelled_at = when(b.cancelled_at)
        row.updated_at = max(t for t in (row.created_at, row.actual_start, row.actual_end, row.cancelled_at) if t)
        return row

    def predictions(self, sim: Simulation, known: list, bookings: dict, events: dict, eras: list[Era], now_h: float):
        """Where the service predicts: at creation, on the car's previous return, at each real-time predict call."""
        from predictions.models import Prediction
        from predictions.services import prediction_id_new

        rng, by_car = self.rng, defaultdict(list)
        for b in known:
            by_car[b.car.car_id].append(b)
        moments = []  # (at, booking, trigger, triggering event, current)
        for car_bookings in by_car.values():
            car_bookings.sort(key=lambda b: b.start)
            for prev, b in zip([None, *car_bookings], car_bookings, strict=False):
                cap = min(b.start, now_h, b.cancelled_at if b.cancelled else math.inf)
                mine = [(b.created, "booking.created", events.get((b.booking_id, "created")))]
                if prev is not None and not prev.cancelled and b.created < prev.actual_end < cap:
                    mine.append((prev.actual_end, "booking.ended", events.get((prev.booking_id, "ended"))))
                mine += [(t, "predict", None) for t in b.predict_at if t < cap]
                mine.sort(key=lambda m: m[0])
                moments += [(t, b, trigger, event, i == len(mine) - 1) for i, (t, trigger, event) in enumerate(mine)]
                if rng.random() < 0.02 and b.created > 3:  # Laravel asks before it creates the booking
                    moments.append((b.created - 2, b, "adhoc", None, False))
        moments.sort(key=lambda m: (m[0], m[1].booking_id))
        rows = []
        for pk, (t, b, trigger, event, current) in enumerate(moments, start=1):
            era = next(e for e in reversed(eras) if sim.when(t) >= e.since or e is eras[0])
            booking = bookings[b.booking_id]
            start = b.times_at(t)[0] if trigger != "adhoc" else t + 1.5
            horizon = start - t
            truth = sim.trajectories[b.car.car_id].at(b.start) if math.isnan(b.battery_at_start) else b.battery_at_start
            sd = (4 + 8 * (1 - math.exp(-horizon / 36))) * era.error_scale
            level = round(min(100.0, max(0.0, truth - sd * rng.gauss(0.0, 1.0))), 1)
            half = 1.96 * sd * rng.uniform(0.9, 1.1)
            if trigger == "booking.created" and horizon > 24 and rng.random() < 0.6:
                mode = "historical"
            else:
                mode = "real_time" if trigger in ("predict", "adhoc") or horizon < 3 else "real_time_cascade"
            done, adhoc = booking.status in ("active", "completed") and trigger != "adhoc", trigger == "adhoc"
            p = Prediction(id=pk, vehicle=booking.vehicle, user_id=b.renter.user_id, model_version=era.version)
            p.booking_external_id, p.booking = ("", None) if adhoc else (b.booking_id, booking)
            p.prediction_id = prediction_id_new(p.booking_external_id, booking.vehicle)
            p.predicted_at, p.booking_start_time, p.predicted_battery = sim.when(t), sim.when(start), level
            p.confidence_lower, p.confidence_upper = (
                round(max(0.0, level - half), 1),
                round(min(100.0, level + half), 1),
            )
            p.prediction_method = ("pattern_" if era is eras[0] else "") + mode
            p.cascade_steps = steps(p.predicted_at, p.booking_start_time, level, mode)
            p.trigger, p.trigger_event_id, p.is_current = "predict" if adhoc else trigger, event, current
            p.status = "completed" if done else "cancelled" if booking.status == "cancelled" else "pending"
            if done:
                p.actual_battery, p.prediction_error = truth, round(truth - level, 1)
            rows.append(p)
        return rows

    @staticmethod
    def response(kind: str, booking, own, affected: list, drains: list[float]) -> dict:
        """The event's response as stored, with the prediction shapes from `predictions.bodies`."""
        from common.api.fields import iso as wire_time
        from learning.models import confidence_for
        from predictions.bodies import affected_item, interval_body

        body = {"status": "success", "booking_id": booking.external_id, "booking_status": STATUS_AFTER[kind]}
        body |= {"notes": [], "affected_bookings": [affected_item(p) for p in affected]}
        if kind == "created":
            body["prediction_id"] = own.prediction_id if own else None
            body["predicted_battery"] = own.predicted_battery if own else None
            body["confidence_interval"] = interval_body(own) if own else None
            body["prediction_method"] = own.prediction_method if own else None
            body["starts_at"] = wire_time(own.booking_start_time) if own else None
        elif kind == "started":
            body |= {"prediction_error": own.prediction_error if own else None, "patterns_updated": True}
        elif kind == "ended":
            average = round(statistics.fmean(drains), 2) if drains else None
            body |= {"outcome_recorded": True, "drain_rate_updated": bool(drains), "new_avg_drain_rate": average}
            body |= {"pattern_confidence": confidence_for(len(drains)), "total_bookings": len(drains)}
            body |= {"queued_for_retraining": True, "prediction_error": None}
        elif kind == "modified":
            body["prediction_updated"] = False
        else:
            body["prediction_cancelled"] = True
        return body

    def readings(self, sim: Simulation, bookings: dict, vehicles: dict) -> list:
        """At every pick-up and return, and every level the platform's telematics reported in a call."""
        from bookings.models import BatteryReading

        rows = []
        for b in bookings.values():
            if b.actual_start:
                rows.append((b.actual_start, b, b.battery_at_start, "booking_started", None))
            if b.actual_end:
                rows.append((b.actual_end, b, b.battery_at_end, "booking_ended", b.charging_at_end))
        for call in sim.calls:
            level = call.body.get("current_battery_level")
            if level is not None and call.at <= self.now and call.kind in ("created", "predict"):
                source = "booking_created" if call.kind == "created" else "predict_request"
                rows.append((call.at, bookings.get(call.booking_id), level, source, None))
        rows.sort(key=lambda r: r[0])
        return [
            BatteryReading(
                vehicle=b.vehicle,
                booking=b,
                level=level,
                recorded_at=at,
                source=source,
                charging=plug,
                created_at=at + timedelta(seconds=1),
            )
            for at, b, level, source, plug in rows
            if b is not None
        ]

    def outcome(self, b):
        """The outcome the service records (`learning.services.outcome_fields`), at the time it would have."""
        from learning.models import BookingOutcome
        from learning.services import outcome_fields

        o = BookingOutcome(booking=b, **outcome_fields(booking=b, battery_at_start=b.battery_at_start))
        o.used_for_training = b.actual_end < self.now - timedelta(days=7)
        o.recorded_at = b.actual_end + timedelta(milliseconds=200)
        return o

    def accuracy(self, predictions: list, bookings: dict) -> None:
        """The daily sums `predictions.services.accuracy_record` adds up: current predictions, scored at pick-up."""
        from learning.models import AccuracyMetric

        sums: dict[tuple, AccuracyMetric] = {}
        for p in predictions:
            if not p.is_current or p.actual_battery is None:
                continue
            day = bookings[p.booking_external_id].actual_start.date()
            key = (day, p.model_version, p.prediction_method)
            m = sums.setdefault(key, AccuracyMetric(date=day, model_version=key[1], prediction_method=key[2]))
            inside = p.confidence_lower <= p.actual_battery <= p.confidence_upper
            for name, value in AccuracyMetric.increments(p.actual_battery - p.predicted_battery, inside).items():
                setattr(m, name, getattr(m, name) + value)
        self.insert("accuracy metrics (daily)", AccuracyMetric, [sums[k] for k in sorted(sums)])

    def callbacks(self, sim: Simulation, eras: list[Era], predictions: list, by_event: dict, calls, vehicles) -> None:
        """A callback per return that re-predicted the car's next booking, and one per car at each promotion."""
        from callbacks.models import CallbackAttempt, CallbackItem, CallbackOutbox

        owed = [(calls[pk - 1].at, "booking.ended", ps, pk) for pk, ps in sorted(by_event.items())]
        latest: dict[str, list] = defaultdict(list)
        for p in predictions:
            latest[p.vehicle.external_id].append(p)
        for era in eras[1:]:
            for car_predictions in latest.values():
                before = [p for p in car_predictions if p.predicted_at <= era.since < p.booking_start_time]
                if before and before[-1].booking_external_id:
                    at = era.since + timedelta(minutes=2, seconds=30 * self.rng.random())
                    owed.append((at, "model_promoted", [before[-1]], None))
        owed.sort(key=lambda o: o[0])
        rows, items, attempts = [], [], []
        for at, triggered_by, ps, event in owed:
            row, tried = self.callback(at, triggered_by, ps, event)
            rows.append(row)
            attempts += tried
            items += [CallbackItem(outbox=row, booking_external_id=p.booking_external_id, sequence=p.pk) for p in ps]
        self.insert("callback outbox", CallbackOutbox, rows)
        self.insert("callback items", CallbackItem, items)
        self.insert("callback attempts", CallbackAttempt, sorted(attempts, key=lambda a: a.started_at))

    def callback(self, at: datetime, triggered_by: str, ps: list, event: int | None):
        from callbacks.models import CallbackAttempt, CallbackOutbox
        from callbacks.services import EVENT, MAX_ATTEMPTS, RETRY_SCHEDULE, callback_body
        from predictions.bodies import callback_item

        rng = self.rng
        callback_id = uuid.UUID(int=rng.getrandbits(128), version=4)
        u = rng.random()
        if u < CALLBACK_FAILED and at < self.now - timedelta(days=4):
            status, n = "failed", MAX_ATTEMPTS
        elif u < CALLBACK_PENDING_RECENT and at > self.now - timedelta(hours=6):
            status, n = "pending", 1 + (rng.random() < 0.5)
        else:
            v = rng.random()
            status, n = "delivered", 1 if v < 0.92 else 2 if v < 0.98 else 3
        waits = [w.total_seconds() for w in RETRY_SCHEDULE]
        offset, tried = 0.02, []
        for k in range(1, n + 1):
            ok, r2 = status == "delivered" and k == n, rng.random()
            started = at + timedelta(seconds=offset * rng.uniform(0.8, 1.2))
            retry = not ok and k < MAX_ATTEMPTS
            error = "" if ok else "HTTP 503" if r2 < 0.5 else "HTTP 500" if r2 < 0.8 else "timed out"
            answer = {"": '{"status":"ok"}', "HTTP 503": "<html><body>503 Service Unavailable</body></html>"}
            answer |= {"HTTP 500": '{"message":"Server Error"}', "timed out": ""}
            tried.append(
                CallbackAttempt(
                    outbox_id=callback_id,
                    number=k,
                    started_at=started,
                    webhook_timestamp=int(started.timestamp()),
                    duration_ms=40 + int(360 * r2) if ok else 20 + int(900 * r2) if r2 < 0.8 else 10000,
                    status_code=None if error == "timed out" else 200 if ok else int(error[5:]),
                    response_excerpt=answer[error],
                    error=error,
                    next_attempt_at=started + timedelta(seconds=waits[k - 1] * rng.uniform(0.8, 1.2))
                    if retry
                    else None,
                )
            )
            offset += waits[k - 1] if k <= len(waits) else 0
        last = tried[-1]
        metadata = {"vehicle_id": ps[0].vehicle.external_id, "model_version": ps[0].model_version}
        if event is not None:
            metadata |= {"trigger_booking_id": ps[0].booking_external_id, "event_id": event}
        metadata["affected_count"] = len(ps)
        body = callback_body(
            callback_id=callback_id,
            occurred_at=at,
            triggered_by=triggered_by,
            items=[callback_item(p) for p in ps],
            metadata=metadata,
        )
        row = CallbackOutbox(
            id=callback_id,
            event=EVENT,
            endpoint=CALLBACK_URL,
            body=body,
            triggered_by=triggered_by,
            status=status,
            attempts=n,
            next_attempt_at=last.next_attempt_at if status == "pending" else None,
            created_at=at,
            delivered_at=last.started_at + timedelta(milliseconds=last.duration_ms) if status == "delivered" else None,
            last_error=last.error,
        )
        return row, tried

    def patterns(self, sim: Simulation, outcomes: list, vehicles: dict) -> None:
        """A VehiclePattern per car and a UserPattern per renter, from the outcomes (and each car's hidden rates)."""
        from learning.models import UserPattern, VehiclePattern

        by_car, by_user = defaultdict(list), defaultdict(list)
        for o in outcomes:
            by_car[o.vehicle.external_id].append(o)
            by_user[o.user_id].append(o)

        def learnt(row, os: list) -> Any:
            """What the EMA learner keeps from the outcomes: drain per hour (and per km), counts, charges."""
            row.total_bookings, row.total_charges = len(os), sum(o.charging_at_end for o in os)
            row.charging_frequency = row.total_charges / len(os) if os else 0.0
            rates = [o.drain_rate_per_hour for o in os if o.drain_rate_per_hour is not None]
            row.avg_drain_rate_per_hour = statistics.fmean(rates) if rates else None
            row.var_drain_rate_per_hour, row.drive_observations = (
                statistics.pvariance(rates) if rates else 0.0,
                len(rates),
            )
            row.updated_at = max((o.ends_at for o in os), default=self.now)
            return row

        rows = []
        for car in sim.cars:
            os, idle = by_car[car.car_id], car.idle_pct_per_hour
            row = learnt(VehiclePattern(vehicle=vehicles[car.car_id]), os)
            per_km = [o.drain_rate_per_km for o in os if o.drain_rate_per_km is not None]
            row.avg_drain_rate_per_km = statistics.fmean(per_km) if per_km else None
            row.var_drain_rate_per_km, row.km_observations = (
                statistics.pvariance(per_km) if per_km else 0.0,
                len(per_km),
            )
            anomalous = self.rng.random() < ANOMALOUS_CARS
            row.avg_idle_drain_per_hour = (
                idle + self.rng.uniform(0.2, 0.6) if anomalous else idle * self.rng.uniform(0.9, 1.1)
            )
            row.baseline_idle_drain_per_hour, row.baseline_var_idle_drain_per_hour = idle, (0.25 * idle) ** 2
            row.var_idle_drain_per_hour, row.idle_observations = (0.3 * idle) ** 2, int(len(os) * 0.65)
            row.baseline_idle_observations, row.unreported_charges = row.idle_observations, int(len(os) * 0.04)
            row.avg_charging_rate_per_hour, row.charge_observations = car.charge_pct_per_hour, row.total_charges
            row.var_charging_rate_per_hour = (0.2 * car.charge_pct_per_hour) ** 2
            row.error_corrections = int(len(os) * 0.05)
            rows.append(row)
        self.insert("vehicle patterns", VehiclePattern, rows)
        rows = []
        for user, os in sorted(by_user.items()):
            row = learnt(UserPattern(user_id=user), os)
            row.avg_return_battery = statistics.fmean(o.battery_at_end for o in os)
            row.avg_duration_hours = statistics.fmean(o.duration_hours for o in os)
            rows.append(row)
        self.insert("user patterns", UserPattern, rows)


def steps(at: datetime, start: datetime, level: float, mode: str) -> list[dict]:
    """A cascade of the prediction's shape: the parked gap before the target, after a trip in a real-time cascade."""
    from common.api.fields import iso as wire_time

    idle = {"type": "idle", "starts_at": wire_time(at), "ends_at": wire_time(start)}
    idle |= {"duration_hours": round((start - at).total_seconds() / 3600, 2), "battery_change": -2.0}
    idle |= {"battery_after": level, "charging_probability": 0.12}
    if mode != "real_time_cascade":
        return [idle]
    trip = {"type": "booking", "starts_at": wire_time(at), "ends_at": wire_time(at + timedelta(hours=2))}
    trip |= {
        "duration_hours": 2.0,
        "battery_change": -9.5,
        "battery_after": min(100.0, level + 2),
        "booking_id": "prev",
    }
    return [trip, idle]


def staff_user():
    from django.contrib.auth import get_user_model

    User = get_user_model()
    user = User.objects.filter(username=STAFF_USERNAME).first()
    if user is None:
        user = User.objects.create_superuser(STAFF_USERNAME, "bench-staff@example.invalid", None)
    return user


def row_counts() -> dict[str, dict[str, Any]]:
    from django.apps import apps
    from django.db import connection

    counts = {}
    with connection.cursor() as cursor:
        for app in ("bookings", "predictions", "learning", "callbacks"):
            for model in apps.get_app_config(app).get_models():
                table = model._meta.db_table
                cursor.execute(f'SELECT count(*), pg_total_relation_size(\'"{table}"\') FROM "{table}"')
                rows, size = cursor.fetchone()
                counts[model._meta.label] = {"rows": rows, "mb": round(size / 2**20, 1)}
    return counts


def seeded_summary() -> dict[str, Any] | None:
    """How an existing database was seeded (for --reuse); None unless a seed ran to its end."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = current_database()"
        )
        comment = cursor.fetchone()[0]
    try:
        return json.loads(comment)[SEED_MARKER]
    except (TypeError, ValueError, KeyError):
        return None


# --- timing -----------------------------------------------------------------------------------------------------


@dataclass
class Page:
    name: str
    url: str | None
    group: str
    missing: str = ""


@dataclass
class Timing:
    name: str
    url: str | None
    group: str
    status: int | str
    first_ms: float | None = None
    median_ms: float | None = None
    max_ms: float | None = None
    runs_ms: list[float] = field(default_factory=list)
    queries: int | None = None
    sql_ms: float | None = None
    slowest: list[dict[str, Any]] = field(default_factory=list)
    bytes: int | None = None
    verdict: str = ""
    error: str = ""
    explains: list[dict[str, Any]] = field(default_factory=list)


def placeholders() -> dict[str, str]:
    """The busiest car of the last 30 days, one of its recent completed bookings, today and a year ago (UTC)."""
    from django.db.models import Count
    from django.utils import timezone

    from bookings.models import Booking, BookingStatus

    today = timezone.now().date()
    since = timezone.now() - timedelta(days=30)
    busiest = (
        Booking.objects.filter(scheduled_start__gte=since)
        .values("vehicle__external_id")
        .annotate(n=Count("id"))
        .order_by("-n", "vehicle__external_id")
        .first()
    )
    if busiest is None:
        raise BenchError("the database has no bookings in the last 30 days: seed it again (run without --reuse)")
    car = busiest["vehicle__external_id"]
    booking = (
        Booking.objects.filter(vehicle__external_id=car, status=BookingStatus.COMPLETED)
        .order_by("-scheduled_start")
        .values_list("external_id", flat=True)
        .first()
    )
    return {
        "car": car,
        "booking": booking or "",
        "today": today.isoformat(),
        "year_ago": (today - timedelta(days=365)).isoformat(),
    }


# (name, URL name, its arguments, query string), with placeholders.
DASHBOARD_PAGES: tuple[tuple[str, str, tuple[str, ...], str], ...] = (
    ("accuracy (last 30 days)", "dashboard:accuracy", (), ""),
    ("accuracy ?car", "dashboard:accuracy", (), "?car={car}"),
    ("accuracy, full year", "dashboard:accuracy", (), "?start={year_ago}&end={today}"),
    ("car timeline (busiest car)", "dashboard:car-timeline", ("{car}",), ""),
    ("models", "dashboard:models", (), ""),
    ("deliveries", "dashboard:deliveries", (), ""),
    ("operations", "dashboard:operations", (), ""),
)
ADMIN_PAGES: tuple[tuple[str, str], ...] = (
    ("admin callbacks", "/admin/callbacks/callbackoutbox/"),
    ("admin inbound events", "/admin/bookings/inboundevent/"),
    ("admin bookings", "/admin/bookings/booking/"),
    ("admin predictions", "/admin/predictions/prediction/"),
    ("admin vehicles", "/admin/bookings/vehicle/"),
    # How staff use them when a delivery went wrong: the failed callbacks, and everything about one booking.
    ("admin callbacks ?status=failed", "/admin/callbacks/callbackoutbox/?status__exact=failed"),
    ("admin inbound events ?q=booking", "/admin/bookings/inboundevent/?q={booking}"),
    ("admin bookings ?q=booking", "/admin/bookings/booking/?q={booking}"),
    ("admin predictions ?q=booking", "/admin/predictions/prediction/?q={booking}"),
)


def pages_default(values: dict[str, str]) -> list[Page]:
    from django.urls import NoReverseMatch, reverse

    pages = []
    for name, url_name, args, query in DASHBOARD_PAGES:
        try:
            path = reverse(url_name, args=[a.format(**values) for a in args])
            pages.append(Page(name, path + query.format(**values), "dashboard"))
        except NoReverseMatch:
            pages.append(Page(name, None, "dashboard", missing=f"no URL named {url_name!r}"))
    pages += [Page(name, url.format(**values), "admin") for name, url in ADMIN_PAGES]
    return pages


def request_once(client, url: str) -> tuple[float, int | str, int, str]:
    """Server time of one GET (ms), its status, the body size, and an error text when it did not answer 200."""
    started = time.perf_counter()
    try:
        response = client.get(url)
    except Exception as exc:  # noqa: BLE001 - a page that raises is reported, not fatal
        return (time.perf_counter() - started) * 1000, "exception", 0, f"{type(exc).__name__}: {exc}"[:500]
    ms = (time.perf_counter() - started) * 1000
    body = b"".join(response) if response.streaming else response.content
    error = "" if response.status_code == 200 else body[:300].decode(errors="replace")
    if response.status_code in (301, 302):
        error = f"redirected to {response.get('Location')}"
    return ms, response.status_code, len(body), error


def time_page(client, page: Page, config: argparse.Namespace) -> Timing:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    timing = Timing(page.name, page.url, page.group, status="missing" if page.missing else "")
    if page.missing:
        timing.verdict, timing.error = "ERROR", page.missing
        return timing
    for i in range(config.warmup):
        ms, status, _, error = request_once(client, page.url)
        if i == 0:
            timing.first_ms = round(ms, 1)
        if status != 200:
            timing.status, timing.error, timing.verdict = status, error, "ERROR"
            return timing
    with CaptureQueriesContext(connection) as captured:
        ms, status, size, error = request_once(client, page.url)
    if timing.first_ms is None:
        timing.first_ms = round(ms, 1)
    timing.status, timing.bytes = status, size
    if status != 200:
        timing.error, timing.verdict = error, "ERROR"
        return timing
    queries = [{"ms": round(float(q["time"]) * 1000, 1), "sql": q["sql"]} for q in captured.captured_queries]
    timing.queries = len(queries)
    timing.sql_ms = round(sum(q["ms"] for q in queries), 1)
    timing.slowest = sorted(queries, key=lambda q: -q["ms"])[:3]
    for _ in range(config.runs):
        ms, status, _, error = request_once(client, page.url)
        if status != 200:
            timing.status, timing.error, timing.verdict = status, error, "ERROR"
            return timing
        timing.runs_ms.append(round(ms, 1))
    timing.median_ms = round(statistics.median(timing.runs_ms), 1)
    timing.max_ms = max(timing.runs_ms)
    timing.verdict = "ok" if timing.median_ms < config.target_ms else "SLOW"
    return timing


def explain(timing: Timing, config: argparse.Namespace) -> None:
    """EXPLAIN (ANALYZE, BUFFERS) of the page's slowest read queries (at least --explain-ms)."""
    from django.db import connection

    for query in timing.slowest:
        sql = query["sql"] or ""
        if query["ms"] < config.explain_ms or not sql.lstrip().upper().startswith("SELECT") or "FOR UPDATE" in sql:
            continue
        with connection.cursor() as cursor:
            cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql)
            plan = "\n".join(row[0] for row in cursor.fetchall())
        timing.explains.append({"ms": query["ms"], "sql": sql, "plan": plan})


def time_pages(config: argparse.Namespace, values: dict[str, str]) -> list[Timing]:
    from django.test import Client

    if config.url:
        pages = [Page(url.format(**values), url.format(**values), "url") for url in config.url]
    else:
        pages = pages_default(values)
    client = Client()
    client.force_login(staff_user())
    timings = []
    for page in pages:
        timing = time_page(client, page, config)
        if config.explain and timing.status == 200:
            explain(timing, config)
        shown = f"{timing.median_ms:.0f} ms" if timing.median_ms is not None else timing.error[:80]
        print(f"  {page.name:<36} {timing.verdict:<5} {shown}", flush=True)
        timings.append(timing)
    return timings


def table(timings: list[Timing], target_ms: float) -> str:
    def num(value: float | int | None, digits: int = 0) -> str:
        return "-" if value is None else f"{value:,.{digits}f}"

    rows = [["page", "status", "first ms", "median ms", "max ms", "queries", "SQL ms", f"< {target_ms:.0f} ms"]]
    for t in timings:
        figures = (t.first_ms, t.median_ms, t.max_ms, t.queries, t.sql_ms)
        rows.append([t.name, str(t.status), *(num(v) for v in figures), t.verdict])
    return text_table(rows)


def details(timings: list[Timing]) -> list[str]:
    lines = []
    for t in timings:
        if t.error:
            lines.append(f"\n{t.name}: {t.status} {t.url or ''}\n  {t.error}")
        if t.slowest and t.slowest[0]["ms"] >= 20:
            lines.append(f"\n{t.name} ({t.url}): slowest queries")
            for q in t.slowest:
                lines.append(f"  {q['ms']:8.1f} ms  {(q['sql'] or '')[:400]}")
        for e in t.explains:
            lines.append(f"\nEXPLAIN ANALYZE ({e['ms']:.1f} ms when captured) of:\n  {e['sql'][:2000]}\n{e['plan']}")
    return lines


# --- main -------------------------------------------------------------------------------------------------------


def postgres_info() -> dict[str, str]:
    from django.db import connection

    info = {}
    with connection.cursor() as cursor:
        for name in ("server_version", "shared_buffers", "work_mem", "effective_cache_size", "random_page_cost"):
            cursor.execute(f"SHOW {name}")
            info[name] = cursor.fetchone()[0]
    return info


def prepare(config: argparse.Namespace, payload: dict[str, Any]) -> None:
    """Create or reuse the database, migrate it, seed it if needed."""
    reuse = config.reuse and database_exists(config.database_url)
    if not reuse:
        database_create(config.database_url)
    print(f"migrating {database_name(config.database_url)} ...", flush=True)
    manage(server_env(config.database_url), "migrate", "--noinput", "-v0")
    setup(config.database_url)
    from django.utils import timezone

    summary = seeded_summary() if reuse else None
    if summary is None:
        if reuse:
            print("the database was never seeded to the end: seeding it again", flush=True)
            from django.db import connections

            connections.close_all()
            database_create(config.database_url)
            manage(server_env(config.database_url), "migrate", "--noinput", "-v0")
        now = timezone.now().replace(second=0, microsecond=0)
        report = Seeder(config, now).run()
        payload["seed"] = asdict(report)
        print(f"seeded in {report.seconds:.0f} s", flush=True)
    else:
        payload["seed"] = {"reused": summary}
        age = timezone.now() - datetime.fromisoformat(summary["now"])
        print(
            f"reusing the database seeded with {summary['cars']} cars and {summary['days']} days up to "
            f"{summary['now'][:16]} ({age.total_seconds() / 86400:.1f} days ago)",
            flush=True,
        )
        if (summary["cars"], summary["days"]) != (config.cars, config.days):
            print(f"  note: not --cars {config.cars} --days {config.days}; run without --reuse to seed those")


def main(argv: list[str] | None = None) -> int:
    config = parse_args(argv)
    payload: dict[str, Any] = {"machine": machine_info(), "config": vars(config)}
    exit_status = 1
    try:
        database_name(config.database_url)
        prepare(config, payload)
        payload["machine"]["postgres"] = postgres_info()
        counts = row_counts()
        payload["rows"] = counts
        print("\nrows per table")
        for label, figures in counts.items():
            print(f"  {label:<30} {figures['rows']:>12,}  {figures['mb']:>9,.1f} MB")
        if config.seed_only:
            exit_status = 0
        else:
            values = placeholders()
            payload["placeholders"] = values
            print(f"\ntiming pages (busiest car {values['car']}, booking {values['booking']}) ...", flush=True)
            timings = time_pages(config, values)
            payload["pages"] = [asdict(t) for t in timings]
            machine = payload["machine"]
            print(
                f"\n{machine['cpu_count']} CPUs, load average {machine['load_average']}, "
                f"Postgres {machine['postgres']['server_version']} (shared_buffers "
                f"{machine['postgres']['shared_buffers']}, work_mem {machine['postgres']['work_mem']}); "
                f"in-process Django test Client, DJANGO_DEBUG=0; {config.warmup} warm-up + {config.runs} timed "
                f"requests per page\n"
            )
            print(table(timings, config.target_ms))
            for line in details(timings):
                print(line)
            errors = [t for t in timings if t.verdict == "ERROR"]
            slow = [t for t in timings if t.verdict == "SLOW"]
            print(
                f"\n{len(timings) - len(errors) - len(slow)} pages under {config.target_ms:.0f} ms, "
                f"{len(slow)} slow, {len(errors)} errors"
            )
            exit_status = 1 if errors else 0
        if config.json_path:
            write_json(config.json_path, payload)
            print(f"figures written to {config.json_path}")
    except BenchError as exc:
        print(f"\nbenchmark failed: {exc}", file=sys.stderr)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
    finally:
        if "django" in sys.modules and "django.db" in sys.modules:
            from django.db import connections

            connections.close_all()
        if config.drop:
            database_drop(config.database_url)
        else:
            print(f"database {database_name(config.database_url)} kept (time again with --reuse; --drop drops it)")
    return exit_status


if __name__ == "__main__":
    sys.exit(main())
