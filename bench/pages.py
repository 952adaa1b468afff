"""Staff pages at scale: server time of the dashboard and the admin changelists with a year of data, on Postgres.

The question (issue 5): do the staff pages stay under 500 ms of server time with a year of data for 500 cars
(about 500 k bookings)? This is a benchmark, not a test: it prints its figures (medians; the machine is noisy).

What it does
    1. Creates a Postgres database (default `batterypred_bench_pages`; `--reuse` keeps an existing, seeded one),
       migrates it and seeds --days (365) of history for --cars (500) cars with set-based SQL
       (`INSERT ... SELECT ... FROM generate_series(...)`, spread with random()), in a few minutes:
         - ~2 renters per car; ~2.7 bookings per car per day, none overlapping on a car, ~2 % cancelled, the
           next 7 days scheduled, one booking active where a car is out now; battery levels follow each car's
           schedule (trip drain by distance, idle drain while parked, a reset to 70-100 % after a charge);
         - a reading at every pick-up and return; an outcome for every completed booking;
         - 1-3 predictions per booking (at creation, on the previous booking's return, shortly before
           pick-up), exactly one `is_current`; errors grow with the horizon (MAE ~3-10 points) and the 95 %
           intervals cover ~95 %; `actual_battery` and `prediction_error` filled once the car was picked up;
         - the model registry of a year: a synthetic bootstrap model, a weekly challenger trained on outcomes,
           two of them promoted (one champion, the others retired or never promoted); predictions carry the
           version that served them (the pattern cascade before the first model); where the models have them,
           each version's drift reference and a weekly DriftCheck of the serving one. No artifact file is
           written, so the champion row is not served (the pattern cascade answers, as the models page says);
         - AccuracyMetric daily rows summed from the current predictions, scored on the pick-up day;
         - one InboundEvent per lifecycle event (created, started, ended, ~10 % modified, cancelled) with a
           small body and the stored response;
         - a CallbackOutbox row per return that re-predicted the car's next booking, plus one per car at each
           promotion: mostly delivered, some pending (recent ones) or failed (retries exhausted), with their
           CallbackAttempt rows (1-3 each; a failed callback has all of its attempts);
         - a VehiclePattern per car (a few cars with an idle drain far above their baseline) and a
           UserPattern per renter, from the outcomes.
       Every CheckConstraint and the one-current-prediction index hold (the inserts, or the index builds,
       would fail otherwise). The big tables' plain indexes are dropped for the load and built again after it;
       then `VACUUM ANALYZE`, as autovacuum would have done on a database that grew over a year. About four
       minutes on 2 cores. A database comment marks a finished seed: --reuse seeds again without it.
       Columns the seed does not know get their model default, so fields added later do not break it.
    2. Times every page in-process with Django's test Client, logged in as a staff superuser (`force_login`),
       on that database with the production settings (DJANGO_DEBUG=0): --warmup untimed requests (the first
       one is reported as "first"), one request under CaptureQueriesContext (the number of SQL queries, their
       total time and the slowest ones), then --runs (7) timed requests; median and max server time.
       Pages: the dashboard (accuracy with its default range, for the busiest car and over the full year; the
       busiest car's timeline; models; deliveries; operations) and the admin changelists staff use for
       deliveries, plain and searched/filtered the way staff look for one booking. `--url` times any list.
       A page that does not answer 200 is an error (exit status 1); a median over --target-ms (500) is SLOW.
       `--explain` runs EXPLAIN (ANALYZE, BUFFERS) on each page's slowest queries.

Run it
    make bench-pages                                    # seed (~4 minutes) and time every page
    make bench-pages BENCH_ARGS=--reuse                 # time again on the database seeded last time
    .venv/bin/python bench/pages.py --reuse --explain --json bench/results/pages.json
    .venv/bin/python bench/pages.py --cars 50 --days 60 --seed-only     # a small database, no timing
    .venv/bin/python bench/pages.py --reuse --url '/admin/bookings/booking/?q={booking}' --url /admin/
        (placeholders: {car} the busiest car, {booking} one of its recent bookings, {today}, {year_ago})

The database is kept afterwards (so that --reuse can time again without seeding); `--drop` drops it at the end.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import random
import statistics
import sys
import time
import uuid
import warnings
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from endpoints import (  # bench/ is a folder of scripts, not a package: endpoints.py is imported by path
    BenchError,
    database_create,
    database_drop,
    database_name,
    machine_info,
    manage,
    psql,
    server_env,
    write_json,
)

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/batterypred_bench_pages"
TARGET_MS = 500.0

FUTURE_DAYS = 7
BOOKINGS_PER_CAR_DAY = 2.7
RENTERS_PER_CAR = 2
CANCELLED_SHARE = 0.02
MODIFIED_SHARE = 0.10
CHARGED_AT_RETURN = 0.28  # returns left plugged in
STAFF_CHARGE = 0.04  # gaps in which staff charged the car without being told
ANOMALOUS_CARS = 0.04  # cars whose recent idle drain is far above their baseline
CALLBACK_FAILED = 0.01
CALLBACK_PENDING_RECENT = 0.06  # of the callbacks written in the last 6 hours
CALLBACK_URL = "http://laravel.internal/api/ml/predictions-updated"
STAFF_USERNAME = "bench-staff"
SEED_MARKER = "batterypred bench/pages.py seed"  # the database comment written once seeding has finished


# --- configuration -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Config:
    database_url: str
    reuse: bool
    drop: bool
    seed_only: bool
    cars: int
    days: int
    renters: int
    seed: int
    warmup: int
    runs: int
    target_ms: float
    urls: tuple[str, ...]
    explain: bool
    explain_ms: float
    json_path: Path | None


def parse_args(argv: list[str] | None = None) -> Config:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--database-url", default=DEFAULT_DATABASE_URL, help="Postgres database to (re)create and use")
    add("--reuse", action="store_true", help="use the database as it is when it is already seeded")
    add("--drop", action="store_true", help="drop the database at the end (kept by default, for --reuse)")
    add("--seed-only", action="store_true", help="create and seed the database, time nothing")
    add("--cars", type=int, default=500, help="fleet size (default 500)")
    add("--days", type=int, default=365, help="days of history (default 365), plus 7 days of scheduled bookings")
    add("--renters", type=int, default=0, help=f"renters (default {RENTERS_PER_CAR} per car)")
    add("--seed", type=int, default=42, help="random seed of the generated data")
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
    return Config(
        database_url=args.database_url,
        reuse=args.reuse,
        drop=args.drop,
        seed_only=args.seed_only,
        cars=args.cars,
        days=args.days,
        renters=args.renters or RENTERS_PER_CAR * args.cars,
        seed=args.seed,
        warmup=args.warmup,
        runs=args.runs,
        target_ms=args.target_ms,
        urls=tuple(args.url),
        explain=args.explain,
        explain_ms=args.explain_ms,
        json_path=args.json_path,
    )


def database_exists(url: str) -> bool:
    return psql(url, f"SELECT 1 FROM pg_database WHERE datname = '{database_name(url)}'") == "1"


def django_setup(database_url: str) -> None:
    """Configure Django in this process on the bench database, with the settings gunicorn would run with."""
    os.environ.update(server_env(database_url))
    os.environ["DJANGO_SETTINGS_MODULE"] = "batterypred.settings"
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    # No model artifact is written: the champion row exists but is not served (the pattern cascade answers),
    # which the models page shows; its one "cannot be loaded" error and whitenoise's note are noise here.
    logging.getLogger("learning.champion").setLevel(logging.CRITICAL)
    warnings.filterwarnings("ignore", message="No directory at")


# --- SQL helpers ----------------------------------------------------------------------------------------------


def sql_literal(value: Any) -> str:
    """A constant as SQL (only for values this script makes: no user input ever reaches it)."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, datetime):
        return f"'{value.isoformat()}'::timestamptz"
    if isinstance(value, date):
        return f"'{value.isoformat()}'::date"
    if isinstance(value, uuid.UUID):
        return f"'{value}'::uuid"
    if isinstance(value, dict | list):
        return "'" + json.dumps(value).replace("'", "''") + "'::jsonb"
    return "'" + str(value).replace("'", "''") + "'"


def sql_array(values: Iterable[float]) -> str:
    return "ARRAY[" + ", ".join(repr(float(v)) for v in values) + "]::float8[]"


def column_default(model, f, now: datetime) -> str | None:
    """What an INSERT ... SELECT puts in a column the seed does not compute; None to leave it out."""
    from django.db.models import NOT_PROVIDED

    if getattr(f, "db_default", NOT_PROVIDED) is not NOT_PROVIDED:
        return None  # the database fills it
    if getattr(f, "auto_now", False) or getattr(f, "auto_now_add", False):
        return sql_literal(now)
    if f.has_default():
        return sql_literal(f.get_default())
    if f.null:
        return "NULL"
    raise BenchError(f"cannot seed {model._meta.label}.{f.name}: NOT NULL without a default (teach bench/pages.py)")


def insert_select(
    cursor, model, exprs: dict[str, str], source: str, now: datetime, optional: Iterable[str] = ()
) -> int:
    """`INSERT INTO <model's table> (...) SELECT <exprs> FROM <source>`; returns the rows inserted.

    `exprs` maps column names to SQL expressions over `source`. Columns the model has but `exprs` does not
    name get their field default (fields added later keep the seed working); names in `optional` are
    dropped when the model has no such column (fields still being added), any other unknown name fails.
    """
    fields = {f.column: f for f in model._meta.concrete_fields}
    unknown = set(exprs) - set(fields) - set(optional)
    if unknown:
        raise BenchError(f"{model._meta.label} has no column {sorted(unknown)}")
    columns, values = [], []
    for column, f in fields.items():
        if column in exprs:
            value = exprs[column]
        elif f.primary_key and f.get_internal_type() in ("AutoField", "BigAutoField", "SmallAutoField"):
            continue
        else:
            value = column_default(model, f, now)
            if value is None:
                continue
        columns.append(f'"{column}"')
        values.append(value)
    sql = f'INSERT INTO "{model._meta.db_table}" ({", ".join(columns)})\nSELECT {", ".join(values)}\nFROM {source}'
    cursor.execute(sql)
    return cursor.rowcount


def identity_reset(cursor, model) -> None:
    """Move the id sequence past the ids the seed chose itself."""
    table = model._meta.db_table
    pk = model._meta.pk.column
    cursor.execute(
        f"SELECT setval(pg_get_serial_sequence('\"{table}\"', '{pk}'), "
        f'(SELECT coalesce(max({pk}), 0) + 1 FROM "{table}"), false)'
    )


def indexes_drop(cursor, tables: list[str]) -> list[str]:
    """Drop the plain (non-constraint, non-primary) indexes of `tables`; return their definitions."""
    names = ", ".join(sql_literal(t) for t in tables)
    cursor.execute(
        f"""
        SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid)
        FROM pg_index i JOIN pg_class t ON t.oid = i.indrelid
        WHERE t.relname IN ({names}) AND NOT i.indisprimary
          AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)
        """
    )
    found = cursor.fetchall()
    for name, _ in found:
        cursor.execute(f"DROP INDEX {name}")
    return [definition for _, definition in found]


def indexes_create(cursor, definitions: list[str]) -> int:
    for definition in definitions:
        cursor.execute(definition)
    return len(definitions)


# --- the model registry of a year --------------------------------------------------------------------------------


@dataclass
class Era:
    """A model version and the time from which it served predictions."""

    version: str
    since: datetime
    error_scale: float  # how good it was: scales the prediction errors of its era


def _segment_figures(rng: random.Random, rows: int, mae: float) -> dict[str, float]:
    return {
        "rows": rows,
        "mae": round(mae, 3),
        "coverage_95": round(rng.uniform(0.935, 0.962), 4),
        "width_95": round(mae * rng.uniform(4.6, 5.4), 3),
    }


def _evaluation(rng: random.Random, gap_rows: int, trip_rows: int, mae: float) -> dict[str, Any]:
    """The shape of learning.training.evaluate: per segment kind, then over both."""
    gap = _segment_figures(rng, gap_rows, mae * rng.uniform(0.7, 0.9))
    trip = _segment_figures(rng, trip_rows, mae * rng.uniform(1.1, 1.3))
    return {
        "gap": gap,
        "trip": trip,
        "rows": gap_rows + trip_rows,
        "mae": round(mae, 3),
        "bias": round(rng.uniform(-0.4, 0.4), 3),
        "within_10": round(min(0.99, 0.97 - mae / 60 + rng.uniform(-0.01, 0.01)), 4),
        "coverage_95": round(rng.uniform(0.94, 0.958), 4),
    }


def registry_seed(rng: random.Random, t0: datetime, now: datetime, cars: int) -> list[Era]:
    """A synthetic bootstrap model, then a weekly retrain on outcomes; two challengers were promoted.

    Returns the serving eras: the pattern cascade first, then each promoted model from its promotion.
    """
    from core.features import GAP_FEATURES, TRIP_FEATURES
    from core.gbm import DEFAULT_PARAMS, DEFAULT_ROUNDS, QUANTILES
    from learning.models import ModelStatus, ModelVersion
    from learning.training import model_version_new
    from predictions.services import MODEL_VERSION

    span = now - t0
    features = {"gap": GAP_FEATURES, "trip": TRIP_FEATURES, "quantiles": list(QUANTILES)}
    hyper = {**DEFAULT_PARAMS, "rounds": DEFAULT_ROUNDS}
    rows: list[dict[str, Any]] = []

    boot_at = t0 + span * 0.10
    boot = model_version_new("synthetic:42", boot_at)
    rows.append(
        {
            "version": boot,
            "source": "synthetic:42",
            "trained_at": boot_at - timedelta(minutes=3),
            "promoted_at": boot_at,
            "window_start": boot_at - timedelta(days=120),
            "window_end": boot_at - timedelta(days=1),
            "training_rows": {"gap": 61_000, "trip": 58_000},
            "holdout_metrics": {
                "gap": _segment_figures(rng, 9_150, 4.1),
                "trip": _segment_figures(rng, 8_700, 6.3),
            },
            "champion_metrics": {},
            "notes": "bootstrap model trained on a simulated fleet",
            "mae": 5.2,
        }
    )
    eras = [Era(MODEL_VERSION, t0 - timedelta(days=30), 1.25), Era(boot, boot_at, 1.1)]
    promote_at = [t0 + span * 0.45, t0 + span * 0.80]
    champion_mae = 5.2
    week = boot_at + timedelta(days=7)
    while week < now - timedelta(hours=1):
        outcomes = int(cars * BOOKINGS_PER_CAR_DAY * (week - t0).total_seconds() / 86400 * 0.98)
        holdout = int(outcomes * 0.2)
        promoted = bool(promote_at) and week >= promote_at[0]
        mae = champion_mae * (rng.uniform(0.88, 0.93) if promoted else rng.uniform(1.0, 1.08))
        version = model_version_new("outcomes", week)
        challenger = _evaluation(rng, holdout, holdout, mae)
        challenger["calibration"] = {
            "gap": _segment_figures(rng, holdout // 7, mae * 0.8),
            "trip": _segment_figures(rng, holdout // 7, mae * 1.2),
        }
        champion = _evaluation(rng, holdout, holdout, champion_mae)
        if promoted:
            reason = f"challenger MAE {mae:.3f} below champion's {champion_mae:.3f}"
        else:
            reason = f"challenger MAE {mae:.3f} not below champion's {champion_mae:.3f}"
        rows.append(
            {
                "version": version,
                "source": "outcomes",
                "trained_at": week,
                "promoted_at": week + timedelta(minutes=20) if promoted else None,
                "window_start": t0,
                "window_end": week - (week - t0) * 0.2,
                "training_rows": {"gap": outcomes, "trip": outcomes},
                "holdout_metrics": challenger,
                "champion_metrics": champion,
                "notes": reason,
                "mae": mae,
            }
        )
        if promoted:
            promote_at.pop(0)
            champion_mae = mae
            eras.append(Era(version, week + timedelta(minutes=20), 1.0 if len(eras) == 2 else 0.92))
        week += timedelta(days=7)

    promoted_versions = {e.version for e in eras[1:]}
    champion_version = eras[-1].version
    objects = []
    for row in rows:
        status = ModelStatus.CHALLENGER
        if row["version"] == champion_version:
            status = ModelStatus.CHAMPION
        elif row["version"] in promoted_versions:
            status = ModelStatus.RETIRED
        objects.append(
            ModelVersion(
                version=row["version"],
                status=status,
                source=row["source"],
                promoted_at=row["promoted_at"],
                window_start=row["window_start"],
                window_end=row["window_end"],
                training_rows=row["training_rows"],
                features=features,
                hyperparameters=hyper,
                holdout_metrics=row["holdout_metrics"],
                champion_metrics=row["champion_metrics"],
                calibration={"gap": round(rng.uniform(0.9, 1.3), 4), "trip": round(rng.uniform(0.9, 1.3), 4)},
                training_seconds=round(40 + row["training_rows"]["trip"] / 4000 * rng.uniform(0.8, 1.2), 2),
                artifact_path=f"{row['version']}.json",
                artifact_sha256=hashlib.sha256(row["version"].encode()).hexdigest(),
                notes=row["notes"],
            )
        )
    if has_field(ModelVersion, "feature_reference"):
        for obj, row in zip(objects, rows, strict=True):
            obj.feature_reference = feature_reference_fake(rng, row["window_end"], features)
    ModelVersion.objects.bulk_create(objects)
    for row in rows:  # trained_at is auto_now_add: set the real times afterwards
        ModelVersion.objects.filter(version=row["version"]).update(trained_at=row["trained_at"])
    return eras


def has_field(model, name: str) -> bool:
    return any(f.name == name for f in model._meta.get_fields())


def _shares(rng: random.Random, bins: int) -> list[float]:
    weights = [rng.uniform(0.6, 1.4) for _ in range(bins)]
    total = sum(weights)
    return [round(w / total, 4) for w in weights]


def feature_reference_fake(rng: random.Random, window_end: datetime, features: dict) -> dict:
    """The shape of learning.drift.feature_reference: decile edges and shares of every gap and trip input."""
    reference: dict[str, Any] = {
        "format": 1,
        "bins": "deciles",
        "decimals": 2,
        "days": 28,
        "window_start": (window_end - timedelta(days=28)).isoformat(),
        "window_end": window_end.isoformat(),
    }
    for kind in ("gap", "trip"):
        columns = {}
        for name in features[kind]:
            edges = sorted(round(rng.uniform(0, 100), 2) for _ in range(9))
            columns[name] = {"edges": edges, "shares": _shares(rng, 10), "missing": round(rng.uniform(0, 0.05), 4)}
        reference[kind] = {"rows": rng.randint(8_000, 12_000), "features": columns}
    return reference


def drift_seed(rng: random.Random, eras: list[Era], now: datetime) -> int:
    """The weekly drift check of each serving model, when the drift check exists (it is being added)."""
    from django.apps import apps

    from core.features import GAP_FEATURES, TRIP_FEATURES
    from learning.models import ModelVersion

    try:
        DriftCheck = apps.get_model("learning", "DriftCheck")
    except LookupError:
        return 0
    names = {f.name for f in DriftCheck._meta.get_fields()}
    unscored = {"month", "car_gaps", "car_trips", "renter_trips"}
    checks = []
    for era, following in zip(eras[1:], [*eras[2:], None], strict=True):
        model = ModelVersion.objects.get(version=era.version)
        at, until = era.since + timedelta(days=7), following.since if following else now
        while at < until:
            features: dict[str, dict] = {}
            worst = (0.0, "")
            for kind, kind_names in (("gap", GAP_FEATURES), ("trip", TRIP_FEATURES)):
                features[kind] = {}
                for name in kind_names:
                    value = round(rng.expovariate(1 / 0.04), 4)
                    status = "ok" if value < 0.1 else "warn" if value < 0.25 else "drift"
                    scored = name not in unscored
                    features[kind][name] = {
                        "psi": value,
                        "status": status,
                        "scored": scored,
                        "shares": _shares(rng, 10),
                        "missing": round(rng.uniform(0, 0.05), 4),
                    }
                    if scored and value > worst[0]:
                        worst = (value, f"{kind}.{name}")
            fields = {
                "model_version": model,
                "checked_at": at,
                "window_start": at - timedelta(days=7),
                "window_end": at,
                "status": "ok" if worst[0] < 0.1 else "warn" if worst[0] < 0.25 else "drift",
                "outcomes": 2_400 + rng.randint(0, 400),
                "rows": {"gap": 2_300 + rng.randint(0, 300), "trip": 2_400 + rng.randint(0, 300)},
                "max_psi": worst[0],
                "worst_feature": worst[1],
                "features": features,
                "thresholds": {"psi_warn": 0.1, "psi_drift": 0.25, "min_rows": 200, "unscored": sorted(unscored)},
            }
            checks.append(DriftCheck(**{k: v for k, v in fields.items() if k in names}))
            at += timedelta(days=7)
    DriftCheck.objects.bulk_create(checks)
    return len(checks)


# --- seeding ----------------------------------------------------------------------------------------------------


@dataclass
class SeedReport:
    now: str
    window_start: str
    seconds: float = 0.0
    steps: list[dict[str, Any]] = field(default_factory=list)


class Seeder:
    """Fills an empty, migrated database; every step is one set-based statement, timed."""

    def __init__(self, config: Config, now: datetime) -> None:
        from bookings.models import BatteryReading, Booking, InboundEvent, Vehicle
        from callbacks.models import CallbackAttempt, CallbackOutbox, EndpointCircuit
        from learning.models import AccuracyMetric, BookingOutcome, UserPattern, VehiclePattern
        from predictions.models import Prediction

        self.config = config
        self.now = now
        self.t0 = (now - timedelta(days=config.days)).replace(minute=0)
        self.end = now + timedelta(days=FUTURE_DAYS)
        self.report = SeedReport(now=now.isoformat(), window_start=self.t0.isoformat())
        self.m = {
            "vehicle": Vehicle,
            "booking": Booking,
            "reading": BatteryReading,
            "event": InboundEvent,
            "prediction": Prediction,
            "outbox": CallbackOutbox,
            "attempt": CallbackAttempt,
            "circuit": EndpointCircuit,
            "outcome": BookingOutcome,
            "vpattern": VehiclePattern,
            "upattern": UserPattern,
            "accuracy": AccuracyMetric,
        }
        self.t = {key: model._meta.db_table for key, model in self.m.items()}

    def step(self, name: str, cursor, sql: str | None = None, run=None) -> None:
        started = time.perf_counter()
        if sql is not None:
            cursor.execute(sql)
            rows = cursor.rowcount
        else:
            rows = run()
        seconds = time.perf_counter() - started
        self.report.steps.append({"step": name, "rows": rows, "seconds": round(seconds, 2)})
        shown = f"{rows:>10,}" if rows is not None and rows >= 0 else " " * 10
        print(f"  {name:<44} {shown} rows {seconds:7.1f} s", flush=True)

    def insert(self, name: str, cursor, key: str, exprs: dict[str, str], source: str, optional=()) -> None:
        self.step(name, cursor, run=lambda: insert_select(cursor, self.m[key], exprs, source, self.now, optional))

    def run(self) -> SeedReport:
        from django.db import connection

        started = time.perf_counter()
        rng = random.Random(self.config.seed)
        print(
            f"seeding {self.config.cars} cars, {self.config.renters} renters, {self.config.days} days "
            f"({self.t0:%Y-%m-%d} .. {self.now:%Y-%m-%d %H:%M} UTC) + {FUTURE_DAYS} days scheduled",
            flush=True,
        )
        with connection.cursor() as cursor:
            cursor.execute("SET temp_buffers = '512MB'")  # before the session's first temporary table
            cursor.execute("SET work_mem = '256MB'")
            cursor.execute("SET maintenance_work_mem = '512MB'")
            cursor.execute("SET synchronous_commit = off")
            cursor.execute("SET enable_memoize = off")  # it would replay a cached random() for equal lateral keys
            cursor.execute(f"SELECT setseed({(self.config.seed % 1000) / 1000.0})")
            cursor.execute(
                "CREATE FUNCTION pg_temp.iso(t timestamptz) RETURNS text LANGUAGE sql STABLE AS "
                """$$ SELECT to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') $$"""
            )
            eras = registry_seed(rng, self.t0, self.now, self.config.cars)
            self.report.steps.append({"step": "model registry", "rows": len(eras)})
            self.step("drift checks", cursor, run=lambda: drift_seed(rng, eras, self.now))
            self.vehicles(cursor)
            self.schedule(cursor)
            # Building an index once is far cheaper than growing it row by row: the big tables' plain indexes
            # (unique constraints stay) are dropped for the load and created again from their definitions.
            big = [self.t[key] for key in ("booking", "event", "reading", "outcome", "prediction", "outbox", "attempt")]
            definitions = indexes_drop(cursor, big)
            self.bookings(cursor)
            self.events(cursor)
            self.readings_and_outcomes(cursor)
            self.predictions(cursor, eras)
            self.accuracy(cursor)
            self.callbacks(cursor, eras)
            self.patterns(cursor)
            for key in ("vehicle", "booking", "event", "prediction"):
                identity_reset(cursor, self.m[key])
            cursor.execute("DISCARD TEMP")
            self.step(
                f"indexes ({len(definitions)}, created again)", cursor, run=lambda: indexes_create(cursor, definitions)
            )
        connection.close()  # the session settings above must not leak into the timed requests
        with connection.cursor() as cursor:
            self.step("VACUUM ANALYZE", cursor, "VACUUM (ANALYZE)")
            self.report.seconds = round(time.perf_counter() - started, 1)
            marker = {SEED_MARKER: {"cars": self.config.cars, "days": self.config.days, "now": self.now.isoformat()}}
            cursor.execute(
                f'COMMENT ON DATABASE "{connection.settings_dict["NAME"]}" IS {sql_literal(json.dumps(marker))}'
            )
        return self.report

    # --- cars and schedules ---

    def vehicles(self, cursor) -> None:
        t, cars = self.t, self.config.cars
        created = sql_literal(self.t0 - timedelta(days=60))
        self.insert(
            "vehicles",
            cursor,
            "vehicle",
            {"external_id": "(1000 + i)::text", "created_at": f"{created} + i * interval '1 minute'"},
            f"generate_series(1, {cars}) AS i",
        )
        cursor.execute(
            f"""
            CREATE TEMP TABLE seed_car AS
            SELECT v.id AS vehicle_id, v.external_id AS vext,
                   0.6 + 0.8 * random() AS busy,             -- bookings per day: 2.7 x busy
                   0.14 + 0.08 * random() AS per_km,         -- points per km driven
                   0.03 + 0.06 * random() AS idle_rate,      -- points per hour parked, unplugged
                   12 + 18 * random() AS charge_rate,        -- points per hour plugged in
                   3000 + 60000 * random() AS odometer0,
                   random() < {ANOMALOUS_CARS} AS anomalous
            FROM "{t["vehicle"]}" v
            """
        )

    def schedule(self, cursor) -> None:
        """Every booking of every car with its times, status, levels and mileage, in temporary tables."""
        c = self.config
        t0, now, end = sql_literal(self.t0), sql_literal(self.now), sql_literal(self.end)

        def slots() -> int:
            cursor.execute(
                f"""
                CREATE TEMP TABLE seed_slot AS
                SELECT c.vehicle_id, c.vext, c.per_km, c.idle_rate, c.charge_rate, c.odometer0, s.seq,
                       {t0} + make_interval(
                           mins => (round((s.seq * p.slot_h + random() * 0.3 * p.slot_h) * 12) * 5)::int
                       ) AS sched_start,
                       (round((0.5 + power(random(), 1.5) * least(4.5, 0.45 * p.slot_h - 0.5)) * 12) * 5)::int
                           AS dur_min,
                       random() AS u_cancel, random() AS u_lead, random() AS u_user, random() AS u_speed,
                       random() AS u_drain, random() AS u_charge, random() AS u_staff, random() AS u_l0,
                       random() AS u_j1, random() AS u_j2, random() AS u_npred, random() AS u_mod,
                       random() AS u_floor, random() AS u_cx, random() AS u_p2, random() AS u_p3
                FROM seed_car c
                CROSS JOIN LATERAL (SELECT 24.0 / ({BOOKINGS_PER_CAR_DAY} * c.busy) AS slot_h) p
                CROSS JOIN LATERAL generate_series(0, ceil(({c.days} + {FUTURE_DAYS}) * 24 / p.slot_h)::int) AS s(seq)
                """
            )
            cursor.execute(f"DELETE FROM seed_slot WHERE sched_start >= {end}")
            cursor.execute("SELECT count(*) FROM seed_slot")
            return cursor.fetchone()[0]

        self.step("schedule (temporary)", cursor, run=slots)
        cursor.execute(
            f"""
            CREATE TEMP TABLE seed_b1 AS
            SELECT x.*,
                   CASE WHEN x.u_cancel < {CANCELLED_SHARE} THEN 'cancelled'
                        WHEN x.act_end <= {now} THEN 'completed'
                        WHEN x.act_start <= {now} THEN 'active'
                        ELSE 'scheduled' END AS status,
                   x.u_cancel >= {CANCELLED_SHARE} AND x.u_charge < {CHARGED_AT_RETURN} AS charge_flag,
                   CASE WHEN x.u_cancel < {CANCELLED_SHARE} THEN 0.0
                        ELSE x.dur_min / 60.0 * (6 + 22 * x.u_speed) END AS distance
            FROM (
                SELECT s.*,
                       s.sched_start + make_interval(mins => s.dur_min) AS sched_end,
                       s.sched_start + make_interval(secs => -300 + 900 * s.u_j1) AS act_start,
                       s.sched_start + make_interval(mins => s.dur_min) + make_interval(secs => -600 + 2400 * s.u_j2)
                           AS act_end,
                       least(s.sched_start - make_interval(secs => 1800 + 604800 * s.u_lead * s.u_lead),
                             {now} - make_interval(secs => 60 + 3000 * s.u_lead)) AS created
                FROM seed_slot s
            ) x
            """
        )
        cursor.execute(
            f"""
            CREATE TEMP TABLE seed_b2 AS
            SELECT y.*, sum(CASE WHEN y.reset THEN 1 ELSE 0 END) OVER w AS epoch
            FROM (
                SELECT b.*,
                       b.distance * b.per_km * (0.85 + 0.3 * b.u_drain) AS drain,
                       coalesce(lag(b.charge_flag) OVER w, true) OR b.u_staff < {STAFF_CHARGE} AS reset,
                       coalesce(extract(epoch FROM b.sched_start - lag(b.sched_end) OVER w) / 3600, 0) AS idle_h
                FROM seed_b1 b
                WINDOW w AS (PARTITION BY b.vehicle_id ORDER BY b.seq)
            ) y
            WINDOW w AS (PARTITION BY y.vehicle_id ORDER BY y.seq)
            """
        )

        def levels() -> int:
            cursor.execute(
                f"""
                CREATE TEMP TABLE seed_b AS
                SELECT z.*,
                       (100000 + z.bid)::text AS ext,
                       (5000 + floor({c.renters} * power(z.u_user, 1.6)))::int::text AS user_ext,
                       lag(z.bid) OVER v AS prev_bid,
                       lag(z.status) OVER v AS prev_status,
                       lag(z.act_end) OVER v AS prev_act_end,
                       lead((100000 + z.bid)::text) OVER v AS next_ext,
                       lead(z.sched_start) OVER v AS next_start,
                       lead(z.lvl_start) OVER v AS next_lvl,
                       least(z.sched_start, {now}, z.cancelled_at) AS tcap,
                       CASE WHEN z.u_npred < 0.35 THEN 1 WHEN z.u_npred < 0.75 THEN 2 ELSE 3 END AS npred
                FROM (
                    SELECT l.*,
                           row_number() OVER (ORDER BY l.created, l.vehicle_id, l.seq) AS bid,
                           round(greatest(1 + l.u_floor, l.lvl_start - l.drain)::numeric, 1)::float8 AS lvl_end,
                           CASE WHEN l.status = 'cancelled'
                                THEN l.created + (least(l.sched_start, {now}) - l.created) * (0.3 + 0.7 * l.u_cx)
                           END AS cancelled_at
                    FROM (
                        SELECT e.*,
                               round(greatest(3 + 4 * e.u_floor,
                                              first_value(70 + 30 * e.u_l0) OVER ep
                                              - sum(CASE WHEN e.reset THEN 0 ELSE e.idle_h * e.idle_rate END + e.drain)
                                                OVER ep
                                              + e.drain)::numeric, 1)::float8 AS lvl_start,
                               round((e.odometer0 + sum(e.distance) OVER (PARTITION BY e.vehicle_id ORDER BY e.seq)
                                      - e.distance)::numeric, 1)::float8 AS km_start
                        FROM seed_b2 e
                        WINDOW ep AS (PARTITION BY e.vehicle_id, e.epoch ORDER BY e.seq)
                    ) l
                ) z
                WINDOW v AS (PARTITION BY z.vehicle_id ORDER BY z.seq)
                """
            )
            cursor.execute("CREATE INDEX ON seed_b (bid)")
            cursor.execute("ANALYZE seed_b")
            cursor.execute("SELECT count(*) FROM seed_b")
            return cursor.fetchone()[0]

        self.step("levels and mileage (temporary)", cursor, run=levels)
        cursor.execute("DROP TABLE seed_slot, seed_b1, seed_b2")

    def bookings(self, cursor) -> None:
        started = "b.status IN ('active', 'completed')"
        ended = "b.status = 'completed'"
        self.insert(
            "bookings",
            cursor,
            "booking",
            {
                "id": "b.bid",
                "external_id": "b.ext",
                "vehicle_id": "b.vehicle_id",
                "user_id": "b.user_ext",
                "status": "b.status",
                "scheduled_start": "b.sched_start",
                "scheduled_end": "b.sched_end",
                "actual_start": f"CASE WHEN {started} THEN b.act_start END",
                "actual_end": f"CASE WHEN {ended} THEN b.act_end END",
                "battery_at_start": f"CASE WHEN {started} THEN b.lvl_start END",
                "battery_at_end": f"CASE WHEN {ended} THEN b.lvl_end END",
                "mileage_at_start": f"CASE WHEN {started} THEN b.km_start END",
                "mileage_at_end": f"CASE WHEN {ended} THEN round((b.km_start + b.distance)::numeric, 1)::float8 END",
                "charging_at_end": f"CASE WHEN {ended} THEN b.charge_flag END",
                "cancelled_at": "b.cancelled_at",
                "created_at": "b.created",
                "updated_at": f"coalesce(CASE WHEN {ended} THEN b.act_end END, "
                f"CASE WHEN {started} THEN b.act_start END, b.cancelled_at, b.created)",
            },
            "seed_b b ORDER BY b.bid",
        )

    def events(self, cursor) -> None:
        """One event per lifecycle step, numbered in the order they arrived."""

        def build() -> int:
            cursor.execute(
                f"""
                CREATE TEMP TABLE seed_e AS
                SELECT row_number() OVER (ORDER BY e.at, e.bid, e.kind) AS eid, e.*,
                       random() AS u_applied, random() AS u_dup
                FROM (
                    SELECT bid, 'booking.created' AS kind, created AS at FROM seed_b
                    UNION ALL
                    SELECT bid, 'booking.modified', created + (tcap - created) * (0.1 + 0.5 * u_mod)
                    FROM seed_b WHERE u_mod < {MODIFIED_SHARE}
                    UNION ALL
                    SELECT bid, 'booking.started', act_start FROM seed_b WHERE status IN ('active', 'completed')
                    UNION ALL
                    SELECT bid, 'booking.ended', act_end FROM seed_b WHERE status = 'completed'
                    UNION ALL
                    SELECT bid, 'booking.cancelled', cancelled_at FROM seed_b WHERE status = 'cancelled'
                ) e
                """
            )
            cursor.execute("CREATE INDEX ON seed_e (bid, kind)")
            cursor.execute("ANALYZE seed_e")
            cursor.execute("SELECT count(*) FROM seed_e")
            return cursor.fetchone()[0]

        self.step("events (temporary)", cursor, run=build)
        ids = "'booking_id', b.ext, 'vehicle_id', b.vext"
        body = f"""CASE e.kind
            WHEN 'booking.created' THEN jsonb_build_object({ids}, 'user_id', b.user_ext,
                'starts_at', pg_temp.iso(b.sched_start), 'ends_at', pg_temp.iso(b.sched_end))
            WHEN 'booking.modified' THEN jsonb_build_object({ids}, 'user_id', b.user_ext,
                'new_starts_at', pg_temp.iso(b.sched_start), 'new_ends_at', pg_temp.iso(b.sched_end),
                'modification_type', 'time_change')
            WHEN 'booking.started' THEN jsonb_build_object({ids}, 'user_id', b.user_ext,
                'actual_battery_at_start', b.lvl_start, 'actual_started_at', pg_temp.iso(b.act_start))
            WHEN 'booking.ended' THEN jsonb_build_object({ids}, 'user_id', b.user_ext,
                'starts_at', pg_temp.iso(b.act_start), 'ends_at', pg_temp.iso(b.act_end),
                'battery_at_start', b.lvl_start, 'battery_at_end', b.lvl_end,
                'mileage_at_start', b.km_start, 'mileage_at_end', round((b.km_start + b.distance)::numeric, 1),
                'charging_at_end', b.charge_flag)
            ELSE jsonb_build_object({ids}) END"""
        state = """CASE e.kind WHEN 'booking.started' THEN 'active' WHEN 'booking.ended' THEN 'completed'
            WHEN 'booking.cancelled' THEN 'cancelled' ELSE 'scheduled' END"""
        applied = "e.u_applied >= 0.003"
        response = f"""jsonb_build_object(
                'status', CASE WHEN {applied} THEN 'success' ELSE 'ignored' END, 'booking_id', b.ext,
                'booking_status', {state}, 'notes', '[]'::jsonb, 'affected_bookings', '[]'::jsonb)
            || CASE e.kind
            WHEN 'booking.created' THEN jsonb_build_object(
                'prediction_id', 'PRED_' || b.ext || '_' || substr(md5(b.ext || ':1'), 1, 12),
                'predicted_battery', round(b.lvl_start::numeric), 'prediction_method', 'historical',
                'starts_at', pg_temp.iso(b.sched_start))
            WHEN 'booking.started' THEN jsonb_build_object('prediction_error', NULL, 'patterns_updated', true)
            WHEN 'booking.ended' THEN jsonb_build_object('outcome_recorded', true, 'drain_rate_updated', true,
                'new_avg_drain_rate', round((b.per_km * 15)::numeric, 2), 'pattern_confidence', 'high',
                'total_bookings', b.seq + 1, 'queued_for_retraining', true, 'prediction_error', NULL)
            WHEN 'booking.modified' THEN jsonb_build_object('prediction_updated', true)
            ELSE jsonb_build_object('prediction_cancelled', true) END"""
        self.insert(
            "inbound events",
            cursor,
            "event",
            {
                "id": "e.eid",
                "event_type": "e.kind",
                "booking_external_id": "b.ext",
                "vehicle_id": "b.vehicle_id",
                "idempotency_key": "e.kind || ':hdr:msg_' || md5(b.ext || e.kind)",
                "body": body,
                "response": response,
                "applied": applied,
                "received_at": "e.at",
                "duplicates": "CASE WHEN e.u_dup < 0.01 THEN 1 + (e.u_dup < 0.002)::int ELSE 0 END",
            },
            "seed_e e JOIN seed_b b ON b.bid = e.bid ORDER BY e.eid",
        )

    def readings_and_outcomes(self, cursor) -> None:
        self.insert(
            "battery readings",
            cursor,
            "reading",
            {
                "vehicle_id": "r.vehicle_id",
                "booking_id": "r.bid",
                "level": "r.level",
                "recorded_at": "r.at",
                "source": "r.source",
                "charging": "r.charging",
                "created_at": "r.at + interval '1 second'",
            },
            """(
                SELECT vehicle_id, bid, lvl_start AS level, act_start AS at, 'booking_started' AS source,
                       NULL::boolean AS charging
                FROM seed_b WHERE status IN ('active', 'completed')
                UNION ALL
                SELECT vehicle_id, bid, lvl_end, act_end, 'booking_ended', charge_flag
                FROM seed_b WHERE status = 'completed'
            ) r ORDER BY r.at""",
        )
        hours = "extract(epoch FROM b.act_end - b.act_start) / 3600"
        self.insert(
            "booking outcomes",
            cursor,
            "outcome",
            {
                "booking_id": "b.bid",
                "vehicle_id": "b.vehicle_id",
                "user_id": "b.user_ext",
                "starts_at": "b.act_start",
                "ends_at": "b.act_end",
                "duration_hours": hours,
                "battery_at_start": "b.lvl_start",
                "battery_at_end": "b.lvl_end",
                "battery_drain": "b.lvl_start - b.lvl_end",
                "charging_at_end": "b.charge_flag",
                "distance_km": "round(b.distance::numeric, 1)::float8",
                "drain_rate_per_hour": f"CASE WHEN {hours} >= 0.1 THEN (b.lvl_start - b.lvl_end) / ({hours}) END",
                "drain_rate_per_km": "CASE WHEN b.distance >= 0.5 THEN (b.lvl_start - b.lvl_end) / b.distance END",
                "used_for_training": f"b.act_end < {sql_literal(self.now - timedelta(days=7))}",
                "recorded_at": "b.act_end + interval '200 milliseconds'",
            },
            "seed_b b WHERE b.status = 'completed' ORDER BY b.act_end",
        )

    # --- predictions and accuracy ---

    def predictions(self, cursor, eras: list[Era]) -> None:
        """1-3 per booking: at creation, when the previous booking of the car ended, shortly before pick-up."""
        version = "CASE " + " ".join(f"WHEN p.at >= {sql_literal(e.since)} THEN '{e.version}'" for e in eras[::-1])
        version += f" ELSE '{eras[0].version}' END"
        scale = "CASE " + " ".join(f"WHEN p.at >= {sql_literal(e.since)} THEN {e.error_scale}" for e in eras[::-1])
        scale += f" ELSE {eras[0].error_scale} END"
        pattern_era = f"p.at < {sql_literal(eras[1].since)}"
        self.step(
            "predictions (temporary)",
            cursor,
            f"""
            CREATE TEMP TABLE seed_p AS
            SELECT q.*,
                   round(least(100, greatest(0, q.truth - q.sd * q.z))::numeric, 1)::float8 AS predicted,
                   1.96 * q.sd * (0.9 + 0.2 * q.uw) AS half_width
            FROM (
                SELECT p.*,
                       {version} AS model_version,
                       CASE WHEN {pattern_era} THEN 'pattern_' ELSE '' END || p.mode AS method,
                       (4 + 8 * (1 - exp(-p.horizon_h / 36))) * ({scale}) AS sd,
                       sqrt(-2 * ln(greatest(p.u1, 1e-12))) * cos(2 * pi() * p.u2) AS z
                FROM (
                    SELECT b.bid, b.ext, b.vehicle_id, b.user_ext, b.sched_start, b.status, b.lvl_start AS truth,
                           b.prev_bid, j.j, j.j = b.npred AS is_current,
                           random() AS u1, random() AS u2, random() AS uw,
                           t.at, extract(epoch FROM b.sched_start - t.at) / 3600 AS horizon_h,
                           CASE WHEN j.j = 1 THEN 'booking.created'
                                WHEN j.j = 2 AND t.after_prev THEN 'booking.ended'
                                WHEN j.j = 2 THEN 'batch' ELSE 'predict' END AS trigger,
                           CASE WHEN j.j = 1 AND b.sched_start - t.at > interval '24 hours' AND b.u_p3 < 0.6
                                     THEN 'historical'
                                WHEN j.j = 3 OR b.sched_start - t.at < interval '3 hours' THEN 'real_time'
                                ELSE 'real_time_cascade' END AS mode
                    FROM seed_b b
                    CROSS JOIN LATERAL generate_series(1, b.npred) AS j(j)
                    CROSS JOIN LATERAL (
                        SELECT CASE WHEN b.prev_act_end > b.created AND b.prev_act_end < b.tcap
                                         AND b.prev_status = 'completed'
                                    THEN b.prev_act_end
                                    ELSE b.created + (b.tcap - b.created) * (0.2 + 0.5 * b.u_p2) END AS t2
                    ) m
                    CROSS JOIN LATERAL (
                        SELECT CASE j.j WHEN 1 THEN b.created WHEN 2 THEN m.t2
                                    ELSE m.t2 + (b.tcap - m.t2) * (0.7 + 0.29 * b.u_p3) END AS at,
                               m.t2 = b.prev_act_end AS after_prev
                    ) t
                ) p
            ) q
            """,
        )
        started = "p.status IN ('active', 'completed')"
        step_idle = """jsonb_build_object('type', 'idle', 'starts_at', pg_temp.iso(p.at),
                'ends_at', pg_temp.iso(p.sched_start), 'duration_hours', round(p.horizon_h::numeric, 2),
                'battery_change', round((p.predicted - least(100, p.predicted + 2))::numeric, 1),
                'battery_after', p.predicted, 'charging_probability', 0.12)"""
        step_trip = """jsonb_build_object('type', 'booking', 'starts_at', pg_temp.iso(p.at),
                'ends_at', pg_temp.iso(p.at + interval '2 hours'), 'duration_hours', 2.0,
                'battery_change', -9.5, 'battery_after', least(100, p.predicted + 1), 'booking_id', 'prev')"""
        self.insert(
            "predictions",
            cursor,
            "prediction",
            {
                "id": "row_number() OVER (ORDER BY p.at, p.bid, p.j)",
                "prediction_id": "'PRED_' || p.ext || '_' || substr(md5(p.ext || ':' || p.j), 1, 12)",
                "booking_external_id": "p.ext",
                "booking_id": "p.bid",
                "vehicle_id": "p.vehicle_id",
                "user_id": "p.user_ext",
                "predicted_at": "p.at",
                "booking_start_time": "p.sched_start",
                "predicted_battery": "p.predicted",
                "confidence_lower": "round(greatest(0, p.predicted - p.half_width)::numeric, 1)::float8",
                "confidence_upper": "round(least(100, p.predicted + p.half_width)::numeric, 1)::float8",
                "confidence_level": "0.95",
                "prediction_method": "p.method",
                "model_version": "p.model_version",
                "cascade_steps": f"""CASE WHEN p.mode = 'real_time_cascade'
                    THEN jsonb_build_array({step_trip}, {step_idle}) ELSE jsonb_build_array({step_idle}) END""",
                "trigger": "p.trigger",
                "trigger_event_id": "coalesce(ec.eid, ee.eid)",
                "is_current": "p.is_current",
                "status": f"CASE WHEN {started} THEN 'completed' WHEN p.status = 'cancelled' THEN 'cancelled' "
                "ELSE 'pending' END",
                "actual_battery": f"CASE WHEN {started} THEN p.truth END",
                "prediction_error": f"CASE WHEN {started} THEN p.truth - p.predicted END",
            },
            """seed_p p
            LEFT JOIN seed_e ec ON p.trigger = 'booking.created' AND ec.bid = p.bid AND ec.kind = 'booking.created'
            LEFT JOIN seed_e ee ON p.trigger = 'booking.ended' AND ee.bid = p.prev_bid AND ee.kind = 'booking.ended'
            ORDER BY p.at, p.bid, p.j""",
        )
        # Laravel also asks for predictions of bookings it has not created yet (no booking id): a few percent.
        cursor.execute('SELECT coalesce(max(id), 0) FROM "' + self.t["prediction"] + '"')
        last_id = cursor.fetchone()[0]
        self.insert(
            "predictions without a booking",
            cursor,
            "prediction",
            {
                "id": f"{last_id} + row_number() OVER (ORDER BY p.at)",
                "prediction_id": "'PRED_V' || p.vext || '_' || substr(md5(p.bid || ':adhoc'), 1, 12)",
                "booking_external_id": "''",
                "vehicle_id": "p.vehicle_id",
                "user_id": "p.user_ext",
                "predicted_at": "p.at",
                "booking_start_time": "p.at + interval '90 minutes'",
                "predicted_battery": "p.lvl_start",
                "confidence_lower": "greatest(0, p.lvl_start - 9.5)",
                "confidence_upper": "least(100, p.lvl_start + 9.5)",
                "confidence_level": "0.95",
                "prediction_method": "'real_time'",
                "model_version": f"'{eras[-1].version}'",
                "trigger": "'predict'",
                "is_current": "false",
                "status": "'pending'",
            },
            f"""(SELECT b.*, b.created - interval '2 hours' AS at FROM seed_b b
                 WHERE b.u_floor < 0.02 AND b.created < {sql_literal(self.now)} - interval '3 hours') p
                ORDER BY p.at""",
        )

    def accuracy(self, cursor) -> None:
        """The daily sums, exactly what learning.services.accuracy_record adds up: current predictions at pick-up."""
        err = "p.truth - p.predicted"
        lower = "round(greatest(0, p.predicted - p.half_width)::numeric, 1)::float8"
        upper = "round(least(100, p.predicted + p.half_width)::numeric, 1)::float8"
        self.insert(
            "accuracy metrics (daily)",
            cursor,
            "accuracy",
            {
                "date": "a.day",
                "model_version": "a.model_version",
                "prediction_method": "a.method",
                "count": "a.n",
                "sum_abs_error": "a.sabs",
                "sum_sq_error": "a.ssq",
                "sum_error": "a.serr",
                "within_5": "a.w5",
                "within_10": "a.w10",
                "within_15": "a.w15",
                "inside_interval": "a.inside",
            },
            f"""(
                SELECT (b.act_start AT TIME ZONE 'UTC')::date AS day, p.model_version, p.method, count(*) AS n,
                       sum(abs({err})) AS sabs, sum(({err}) * ({err})) AS ssq, sum({err}) AS serr,
                       count(*) FILTER (WHERE abs({err}) <= 5) AS w5,
                       count(*) FILTER (WHERE abs({err}) <= 10) AS w10,
                       count(*) FILTER (WHERE abs({err}) <= 15) AS w15,
                       count(*) FILTER (WHERE p.truth BETWEEN {lower} AND {upper}) AS inside
                FROM seed_p p JOIN seed_b b ON b.bid = p.bid
                WHERE p.is_current AND p.status IN ('active', 'completed')
                GROUP BY 1, 2, 3
            ) a ORDER BY a.day, a.model_version, a.method""",
        )

    # --- callbacks ---

    def callbacks(self, cursor, eras: list[Era]) -> None:
        from callbacks.models import EndpointCircuit
        from callbacks.services import MAX_ATTEMPTS, RETRY_SCHEDULE

        now = sql_literal(self.now)
        waits = [w.total_seconds() for w in RETRY_SCHEDULE] + [0.0]
        offsets = [0.02]
        for w in waits[:-1]:
            offsets.append(offsets[-1] + w)
        item = """jsonb_build_array(jsonb_build_object('booking_id', c.item_ext,
                'predicted_battery', c.item_lvl,
                'confidence_interval', jsonb_build_object('lower', greatest(0, c.item_lvl - 11.0),
                    'upper', least(100, c.item_lvl + 11.0), 'confidence_level', 0.95),
                'prediction_method', 'real_time_cascade',
                'prediction_id', 'PRED_' || c.item_ext || '_' || substr(md5(c.item_ext || ':2'), 1, 12),
                'model_version', c.model_version, 'booking_start_time', pg_temp.iso(c.item_start),
                'starts_at', pg_temp.iso(c.item_start)))"""
        version_at = "CASE " + " ".join(
            f"WHEN b.act_end >= {sql_literal(e.since)} THEN '{e.version}'" for e in eras[::-1]
        )
        version_at += f" ELSE '{eras[0].version}' END"
        promotions = " UNION ALL ".join(
            f"""(SELECT DISTINCT ON (b.vehicle_id) b.vehicle_id, b.vext, b.ext AS trigger_ext, NULL::bigint AS eid,
                       {sql_literal(e.since)} + interval '2 minutes' + random() * interval '30 seconds' AS at,
                       'model_promoted' AS triggered_by, b.ext AS item_ext, b.lvl_start AS item_lvl,
                       b.sched_start AS item_start, '{e.version}' AS model_version
                FROM seed_b b WHERE b.sched_start > {sql_literal(e.since)}
                ORDER BY b.vehicle_id, b.sched_start)"""
            for e in eras[1:]
        )

        def build() -> int:
            cursor.execute(
                f"""
                CREATE TEMP TABLE seed_cb AS
                SELECT gen_random_uuid() AS id, y.*,
                       CASE y.status WHEN 'failed' THEN {MAX_ATTEMPTS}
                                     WHEN 'pending' THEN 1 + (y.u_n < 0.5)::int
                                     ELSE CASE WHEN y.u_n < 0.92 THEN 1 WHEN y.u_n < 0.98 THEN 2 ELSE 3 END
                       END AS attempts
                FROM (
                    SELECT x.*, random() AS u_n,
                           CASE WHEN x.u_s < {CALLBACK_FAILED} AND x.at < {now} - interval '4 days' THEN 'failed'
                                WHEN x.u_s < {CALLBACK_PENDING_RECENT} AND x.at > {now} - interval '6 hours'
                                     THEN 'pending'
                                ELSE 'delivered' END AS status
                    FROM (
                        SELECT r.*, random() AS u_s FROM (
                            SELECT b.vehicle_id, b.vext, b.ext AS trigger_ext, ee.eid,
                                   b.act_end + make_interval(secs => 0.05 + 0.3 * random()) AS at,
                                   'booking.ended' AS triggered_by, b.next_ext AS item_ext, b.next_lvl AS item_lvl,
                                   b.next_start AS item_start, {version_at} AS model_version
                            FROM seed_b b JOIN seed_e ee ON ee.bid = b.bid AND ee.kind = 'booking.ended'
                            WHERE b.status = 'completed' AND b.next_ext IS NOT NULL
                            UNION ALL {promotions}
                        ) r
                    ) x
                ) y
                """
            )
            cursor.execute(
                f"""
                CREATE TEMP TABLE seed_att AS
                SELECT a.outbox_id, a.n, a.started_at, a.ok, a.r2,
                       CASE WHEN a.ok THEN 40 + (360 * a.r2)::int
                            WHEN a.r2 < 0.8 THEN 20 + (900 * a.r2)::int ELSE 10000 END AS duration_ms,
                       CASE WHEN NOT a.ok AND a.n < {MAX_ATTEMPTS}
                            THEN a.started_at + make_interval(secs => ({sql_array(waits)})[a.n] * (0.8 + 0.4 * a.r3))
                       END AS next_at
                FROM (
                    SELECT c.id AS outbox_id, g.n, c.status = 'delivered' AND g.n = c.attempts AS ok,
                           random() AS r2, random() AS r3,
                           c.at + make_interval(secs => ({sql_array(offsets)})[g.n] * (0.8 + 0.4 * random()))
                               AS started_at
                    FROM seed_cb c CROSS JOIN LATERAL generate_series(1, c.attempts) AS g(n)
                ) a
                """
            )
            cursor.execute("CREATE INDEX ON seed_att (outbox_id, n)")
            cursor.execute("SELECT count(*) FROM seed_cb")
            return cursor.fetchone()[0]

        self.step("callbacks (temporary)", cursor, run=build)
        failure = "CASE WHEN l.r2 < 0.5 THEN 'HTTP 503' WHEN l.r2 < 0.8 THEN 'HTTP 500' ELSE 'timed out' END"
        self.insert(
            "callback outbox",
            cursor,
            "outbox",
            {
                "id": "c.id",
                "event": "'predictions.updated'",
                "endpoint": sql_literal(CALLBACK_URL),
                "body": f"""jsonb_build_object('id', c.id, 'event', 'predictions.updated',
                    'occurred_at', pg_temp.iso(c.at), 'triggered_by', c.triggered_by,
                    'affected_bookings', {item},
                    'metadata', jsonb_build_object('vehicle_id', c.vext, 'trigger_booking_id', c.trigger_ext,
                        'event_id', c.eid, 'model_version', c.model_version, 'affected_count', 1))::text""",
                "triggered_by": "c.triggered_by",
                "status": "c.status",
                "attempts": "c.attempts",
                "next_attempt_at": "CASE WHEN c.status = 'pending' THEN l.next_at END",
                "created_at": "c.at",
                "delivered_at": "CASE WHEN c.status = 'delivered' "
                "THEN l.started_at + make_interval(secs => l.duration_ms / 1000.0) END",
                "last_error": f"CASE WHEN c.status = 'delivered' THEN '' ELSE {failure} END",
            },
            "seed_cb c JOIN seed_att l ON l.outbox_id = c.id AND l.n = c.attempts ORDER BY c.at",
        )
        self.insert(
            "callback attempts",
            cursor,
            "attempt",
            {
                "outbox_id": "l.outbox_id",
                "number": "l.n",
                "started_at": "l.started_at",
                "webhook_timestamp": "extract(epoch FROM l.started_at)::bigint",
                "duration_ms": "l.duration_ms",
                "status_code": "CASE WHEN l.ok THEN 200 WHEN l.r2 < 0.5 THEN 503 WHEN l.r2 < 0.8 THEN 500 END",
                "response_excerpt": """CASE WHEN l.ok THEN '{"status":"ok"}'
                    WHEN l.r2 < 0.5 THEN '<html><body>503 Service Unavailable</body></html>'
                    WHEN l.r2 < 0.8 THEN '{"message":"Server Error"}' ELSE '' END""",
                "error": f"CASE WHEN l.ok THEN '' ELSE {failure} END",
                "next_attempt_at": "l.next_at",
            },
            "seed_att l ORDER BY l.started_at",
        )
        EndpointCircuit.objects.create(endpoint=CALLBACK_URL)

    # --- learned patterns ---

    def patterns(self, cursor) -> None:
        o = self.t["outcome"]
        self.insert(
            "vehicle patterns",
            cursor,
            "vpattern",
            {
                "vehicle_id": "c.vehicle_id",
                "avg_drain_rate_per_hour": "o.dph",
                "var_drain_rate_per_hour": "coalesce(o.var_dph, 0)",
                "drive_observations": "coalesce(o.n_dph, 0)",
                "avg_drain_rate_per_km": "o.dpk",
                "var_drain_rate_per_km": "coalesce(o.var_dpk, 0)",
                "km_observations": "coalesce(o.n_dpk, 0)",
                "avg_idle_drain_per_hour": "CASE WHEN c.anomalous THEN c.idle_rate + 0.2 + 0.4 * random() "
                "ELSE c.idle_rate * (0.9 + 0.2 * random()) END",
                "var_idle_drain_per_hour": "power(0.3 * c.idle_rate, 2)",
                "idle_observations": "(coalesce(o.n, 0) * 0.65)::int",
                "baseline_idle_drain_per_hour": "c.idle_rate",
                "baseline_var_idle_drain_per_hour": "power(0.25 * c.idle_rate, 2)",
                "baseline_idle_observations": "(coalesce(o.n, 0) * 0.65)::int",
                "avg_charging_rate_per_hour": "c.charge_rate",
                "var_charging_rate_per_hour": "power(0.2 * c.charge_rate, 2)",
                "charge_observations": "coalesce(o.charges, 0)",
                "unreported_charges": f"(coalesce(o.n, 0) * {STAFF_CHARGE})::int",
                "charging_frequency": "CASE WHEN coalesce(o.n, 0) > 0 THEN o.charges::float8 / o.n ELSE 0 END",
                "total_charges": "coalesce(o.charges, 0)",
                "total_bookings": "coalesce(o.n, 0)",
                "error_corrections": "(coalesce(o.n, 0) * 0.05)::int",
                "updated_at": f"coalesce(o.last, {sql_literal(self.now)})",
            },
            f"""seed_car c LEFT JOIN (
                SELECT vehicle_id, avg(drain_rate_per_hour) AS dph, var_pop(drain_rate_per_hour) AS var_dph,
                       count(drain_rate_per_hour) AS n_dph, avg(drain_rate_per_km) AS dpk,
                       var_pop(drain_rate_per_km) AS var_dpk, count(drain_rate_per_km) AS n_dpk, count(*) AS n,
                       count(*) FILTER (WHERE charging_at_end) AS charges, max(ends_at) AS last
                FROM "{o}" GROUP BY vehicle_id
            ) o ON o.vehicle_id = c.vehicle_id ORDER BY c.vehicle_id""",
            optional=("baseline_idle_drain_per_hour", "baseline_var_idle_drain_per_hour", "baseline_idle_observations"),
        )
        self.insert(
            "user patterns",
            cursor,
            "upattern",
            {
                "user_id": "u.user_id",
                "avg_return_battery": "u.ret",
                "charging_frequency": "u.charges::float8 / u.n",
                "total_charges": "u.charges",
                "avg_duration_hours": "u.dur",
                "avg_drain_rate_per_hour": "u.dph",
                "var_drain_rate_per_hour": "coalesce(u.var_dph, 0)",
                "drive_observations": "u.n_dph",
                "total_bookings": "u.n",
                "updated_at": "u.last",
            },
            f"""(
                SELECT user_id, avg(battery_at_end) AS ret, count(*) FILTER (WHERE charging_at_end) AS charges,
                       avg(duration_hours) AS dur, avg(drain_rate_per_hour) AS dph,
                       var_pop(drain_rate_per_hour) AS var_dph, count(drain_rate_per_hour) AS n_dph,
                       count(*) AS n, max(ends_at) AS last
                FROM "{o}" GROUP BY user_id
            ) u ORDER BY u.user_id""",
        )


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


def time_page(client, page: Page, config: Config) -> Timing:
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


def explain(timing: Timing, config: Config) -> None:
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


def time_pages(config: Config, values: dict[str, str]) -> list[Timing]:
    from django.test import Client

    if config.urls:
        pages = [Page(url.format(**values), url.format(**values), "url") for url in config.urls]
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

    header = ("page", "status", "first ms", "median ms", "max ms", "queries", "SQL ms", f"< {target_ms:.0f} ms")
    rows = [
        (
            t.name,
            str(t.status),
            num(t.first_ms),
            num(t.median_ms),
            num(t.max_ms),
            num(t.queries),
            num(t.sql_ms),
            t.verdict,
        )
        for t in timings
    ]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(header, widths, strict=True)))
    ]
    lines.append("  ".join("-" * w for w in widths))
    for row in rows:
        lines.append(
            "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True)))
        )
    return "\n".join(lines)


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


def prepare(config: Config, payload: dict[str, Any]) -> None:
    """Create or reuse the database, migrate it, seed it if needed."""
    reuse = config.reuse and database_exists(config.database_url)
    if not reuse:
        database_create(config.database_url)
    print(f"migrating {database_name(config.database_url)} ...", flush=True)
    manage(server_env(config.database_url), "migrate", "--noinput", "-v0")
    django_setup(config.database_url)
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
    payload: dict[str, Any] = {"machine": machine_info() | {"load_average": os.getloadavg()}}
    payload["config"] = {**asdict(config), "json_path": str(config.json_path) if config.json_path else None}
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
