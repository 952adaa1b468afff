"""Staff pages at scale: server time of the dashboard and the admin changelists with a year of data, on Postgres.

The questions: do the staff pages stay under 500 ms of server time with a year of data for 500 cars (issue 5)?
How much disk does that year take, with and without retention (issue 12, "Growth")?
A benchmark, not a test: it prints its figures (medians; the machine is noisy).

1. Seeds a Postgres database (default `batterypred_bench_pages`; `--reuse` keeps one already seeded, which a
   database comment marks) with --days (365) of --cars (500) cars. The service itself writes every row: the
   project's simulator (`core.simulation`, its clock ending now, the next 7 days scheduled) makes the stream of
   --template-cars (5) cars, which goes through the whole service in-process (`bench.common.replay_in_process`:
   webhooks, real-time predicts, learning, the cascade, the outbox) with the clock at each call's time, and
   callbacks delivered to a Laravel stand-in that has outages (some callbacks fail for good, a few are pending).
   Those cars' rows are then copied in SQL up to --cars cars (`copy_sql`: ids moved, the platform's ids
   suffixed `~k`), with the big tables' plain indexes dropped and built again after, and the daily accuracy
   sums scaled to the fleet. A year's model registry is added (a bootstrap model, weekly challengers, two
   promoted) with weekly drift checks; no artifact file is written, so the pattern cascade serves, as the
   models page says. Then `VACUUM ANALYZE`.
2. Times every page in-process with Django's test Client as a staff superuser, DJANGO_DEBUG=0: --warmup untimed
   requests (the first reported as "first"), one under CaptureQueriesContext (queries, SQL time, the slowest),
   then --runs (7) timed; median and max. Pages: the dashboard's (accuracy by default, for the busiest car and
   for the year; the busiest car's timeline; models; deliveries; operations) and the admin changelists staff
   use, plain and searched the way staff look for one booking. A page not answering 200 is an error (exit 1);
   a median over --target-ms (500) is SLOW. `--explain` runs EXPLAIN (ANALYZE, BUFFERS) on the slowest queries.
3. With --retention, last: measures each table's live rows (copied and compacted: heap, TOAST, indexes), runs
   retention as of now (`callbacks.retention.retention_run`, what `manage.py prune_data` and the daily task
   run), measures again, and prints the year's disk with and without retention, scaled to 1,000 cars. The
   database keeps the pruned state.

    make bench-pages                                    # seed and time every page
    make bench-pages BENCH_ARGS=--reuse                 # time again on the database seeded last time
    make bench-pages BENCH_ARGS="--retention --drop"    # and then the disk retention gives back
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
import random
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from bench.common import (
    POSTGRES,
    ROOT,
    BenchError,
    database_create,
    database_drop,
    database_exists,
    database_name,
    django_setup,
    machine_info,
    manage,
    parser_for,
    replay_in_process,
    server_env,
    text_table,
    write_json,
)
from core.simulation.fleet import FleetConfig, simulate

DEFAULT_DATABASE_URL = POSTGRES + "batterypred_bench_pages"
TARGET_MS = 500.0

FUTURE_DAYS = 7
RENTERS_PER_CAR = 2
CALLBACK_FLAKY = 0.02  # Laravel's share of 503 answers outside its outages
CALLBACK_URL = "http://laravel.internal/api/ml/predictions-updated"
STAFF_USERNAME = "bench-staff"
SEED_MARKER = "batterypred bench/pages.py seed"  # the database comment written once seeding has finished


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = parser_for(__doc__)
    add = parser.add_argument
    add("--database-url", default=DEFAULT_DATABASE_URL, help="Postgres database to (re)create and use")
    add("--reuse", action="store_true", help="use the database as it is when it is already seeded")
    add("--drop", action="store_true", help="drop the database at the end (kept by default, for --reuse)")
    add("--seed-only", action="store_true", help="create and seed the database, time nothing")
    add("--cars", type=int, default=500, help="fleet size (default 500)")
    add("--days", type=int, default=365, help="days of history (default 365), plus 7 days of scheduled bookings")
    add("--template-cars", type=int, default=5, help="cars replayed through the service, then copied (default 5)")
    add("--seed", type=int, default=42, help="simulator seed of the fleet and random seed of the rest")
    add("--warmup", type=int, default=2, help="untimed requests per page first (default 2)")
    add("--runs", type=int, default=7, help="timed requests per page (default 7)")
    add("--target-ms", type=float, default=TARGET_MS, help="a median above this is SLOW (default 500)")
    add("--url", action="append", default=[], help="time this URL instead of the default pages (repeatable)")
    add("--explain", action="store_true", help="EXPLAIN ANALYZE the slowest queries of every page")
    add("--explain-ms", type=float, default=50.0, help="only queries at least this slow (default 50 ms)")
    add("--retention", action="store_true", help="last, apply retention as of now and measure the disk it gives back")
    add("--json", type=Path, dest="json_path", help="write the figures to this JSON file")
    args = parser.parse_args(argv)
    if args.cars < 2 or args.template_cars < 1 or args.days < 14 or args.runs < 1 or args.warmup < 0:
        parser.error("--cars >= 2, --template-cars >= 1, --days >= 14, --runs >= 1 and --warmup >= 0")
    return args


def setup(database_url: str) -> None:
    """Django in this process on the bench database, with the settings gunicorn would run with, callbacks on."""
    models = str(ROOT / "data" / "bench-pages-models")  # empty: the pattern cascade serves the replay
    django_setup(server_env(database_url, ML_CALLBACK_URL=CALLBACK_URL, ML_WEBHOOK_SECRET="bench", MODEL_DIR=models))
    # The registry seeded after the replay has a champion row but no artifact (the pattern cascade answers),
    # which the models page shows: its one "cannot be loaded" error is noise here, as are the callbacks that
    # fail while the replay's Laravel is down.
    for name in ("learning.champion", "callbacks.services"):
        logging.getLogger(name).setLevel(logging.CRITICAL)


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


def registry_seed(
    rng: random.Random, t0: datetime, now: datetime, outcomes_per_day: float
) -> list[tuple[Any, datetime]]:
    """A synthetic bootstrap model, then a weekly retrain on outcomes; two challengers were promoted.

    Returns each model that served, with the time it was promoted.
    """
    from core.features import GAP_FEATURES, TRIP_FEATURES
    from core.gbm import DEFAULT_PARAMS, DEFAULT_ROUNDS, QUANTILES
    from learning.models import ModelStatus, ModelVersion
    from learning.training import model_version_new

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
    rows, served = [boot], [(boot, boot_at)]
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
            served.append((rows[-1], at))
        week += timedelta(days=7)
    for row in rows:
        row.status = ModelStatus.RETIRED if row.promoted_at else ModelStatus.CHALLENGER
    served[-1][0].status = ModelStatus.CHAMPION
    ModelVersion.objects.bulk_create(rows)
    return served


def drift_seed(rng: random.Random, served: list[tuple[Any, datetime]], now: datetime) -> int:
    """The weekly drift check of each model while it served."""
    from core.features import GAP_FEATURES, TRIP_FEATURES
    from learning.models import DriftCheck

    unscored = {"month", "car_gaps", "car_trips", "renter_trips"}
    thresholds = {"psi_warn": 0.1, "psi_drift": 0.25, "min_rows": 200, "unscored": sorted(unscored)}

    def judged(psi: float) -> str:
        return "ok" if psi < 0.1 else "warn" if psi < 0.25 else "drift"

    checks = []
    for (model, since), following in zip(served, [*served[1:], None], strict=True):
        at, until = since + timedelta(days=7), following[1] if following else now
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


# --- seeding: a few cars' year through the service, then copied -----------------------------------------------

# The tables a car's history fills, parents first: each is copied with its ids moved (`copy_sql`).
COPIED = (
    "bookings.Vehicle",
    "bookings.Booking",
    "bookings.InboundEvent",
    "bookings.BatteryReading",
    "predictions.Prediction",
    "learning.BookingOutcome",
    "learning.VehiclePattern",
    "learning.UserPattern",
    "callbacks.CallbackOutbox",
    "callbacks.CallbackItem",
    "callbacks.CallbackAttempt",
)
PLATFORM_IDS = {"external_id", "booking_external_id", "user_id", "prediction_id", "idempotency_key"}


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


def laravel_stand_in(t0: datetime, now: datetime, rng: random.Random):
    """Laravel's callback endpoint as httpx sees it: a 4-day outage mid-year (callbacks that fail for good), an
    hour down just before now (callbacks still pending), and 2 % of answers a 503. Judged by the replay's clock."""
    import httpx
    from django.utils import timezone

    mid = t0 + (now - t0) / 2
    outages = [(mid, mid + timedelta(days=4)), (now - timedelta(hours=2), now - timedelta(hours=1))]

    def answer(request):
        at = timezone.now()
        if rng.random() < CALLBACK_FLAKY or any(start <= at < end for start, end in outages):
            return httpx.Response(503, text="<html><body>503 Service Unavailable</body></html>")
        return httpx.Response(200, json={"status": "ok"})

    return answer


def copy_sql(model, copies: int, largest: dict[str, int]) -> str:
    """One INSERT ... SELECT adding `copies` copies of every row of `model`, with ids that collide with none.

    Copy k moves an integer id, and every foreign key to it, by k times its table's largest id; derives a
    UUID from the old one and k; and appends `~k` to the platform's ids (cars, bookings, renters, predictions).
    So copy k is another set of cars and renters with the same history. JSON bodies keep the replayed ids.
    """
    columns, values = [], []
    for f in model._meta.concrete_fields:
        column = f'"{f.column}"'
        pointed = f.related_model if f.is_relation else model if f.primary_key else None
        if pointed is not None and pointed._meta.pk.get_internal_type() == "UUIDField":
            value = f"md5({column}::text || k)::uuid"
        elif pointed is not None:
            value = f"{column} + k * {largest[pointed._meta.db_table]}"
        elif f.name in PLATFORM_IDS:
            value = f"CASE WHEN coalesce({column}, '') = '' THEN {column} ELSE {column} || '~' || k END"
        else:
            value = column
        columns.append(column)
        values.append(value)
    table = model._meta.db_table
    return (
        f'INSERT INTO "{table}" ({", ".join(columns)}) SELECT {", ".join(values)} '
        f'FROM "{table}" CROSS JOIN generate_series(1, {copies}) AS k'
    )


def seed(config: argparse.Namespace, now: datetime) -> dict[str, Any]:
    """Replay --template-cars cars' year through the service, copy them up to --cars, add a year's registry."""
    from django.apps import apps
    from django.db import connection
    from django.db.models import F
    from django_q.models import OrmQ

    from learning.models import AccuracyMetric, ModelVersion

    started, c, rng = time.perf_counter(), config, random.Random(config.seed)
    t0 = (now - timedelta(days=c.days)).replace(minute=0)
    report: dict[str, Any] = {"now": now.isoformat(), "window_start": t0.isoformat(), "steps": []}

    def step(name: str, run) -> Any:
        began = time.perf_counter()
        result = run()
        seconds = round(time.perf_counter() - began, 1)
        figures = result if isinstance(result, int | dict) else None
        report["steps"].append({"step": name, "seconds": seconds, "result": figures})
        print(f"  {name:<52} {seconds:7.1f} s", flush=True)
        return result

    template = min(c.template_cars, c.cars)
    copies = math.ceil(c.cars / template) - 1
    print(
        f"seeding {c.cars} cars: {template} cars' {c.days} days ({t0:%Y-%m-%d} .. {now:%Y-%m-%d %H:%M} UTC, "
        f"+ {FUTURE_DAYS} days scheduled) replayed through the service, then {copies} copies",
        flush=True,
    )
    days = c.days + FUTURE_DAYS
    sim = simulate(FleetConfig(cars=template, renters=RENTERS_PER_CAR * template, days=days, seed=c.seed, epoch=t0))
    laravel = laravel_stand_in(t0, now, rng)
    step(
        "replay (in-process, the clock at each call)",
        lambda: replay_in_process(sim, until=now, laravel=laravel),
    )
    OrmQ.objects.all().delete()  # the deliveries queued for a worker; the replay delivered them itself
    models = [apps.get_model(label) for label in COPIED]
    big = [m._meta.db_table for m in models]
    with connection.cursor() as cursor, stored_times([ModelVersion]):
        cursor.execute("SET maintenance_work_mem = '512MB'")
        cursor.execute("SET synchronous_commit = off")
        # Building an index once is far cheaper than growing it row by row: the copied tables' plain indexes
        # (unique constraints stay) are dropped for the load and created again from their definitions.
        definitions = indexes_drop(cursor, big)
        largest = {}
        for m in models:
            if m._meta.pk.get_internal_type() != "UUIDField":
                cursor.execute(f'SELECT coalesce(max("{m._meta.pk.column}"), 0) FROM "{m._meta.db_table}"')
                largest[m._meta.db_table] = cursor.fetchone()[0]
        for m in models:
            step(f"{m._meta.label} x {copies + 1}", lambda m=m: cursor.execute(copy_sql(m, copies, largest)).rowcount)
            if m._meta.db_table in largest:
                identity_reset(cursor, m)
        sums = AccuracyMetric.increments(0.0, True)
        AccuracyMetric.objects.update(**{name: F(name) * (copies + 1) for name in sums})
        done = sum(1 for b in sim.bookings if not b.cancelled and b.actual_end <= sim.hours(now))
        served = step("model registry", lambda: registry_seed(rng, t0, now, done * (copies + 1) / c.days))
        step("drift checks", lambda: drift_seed(rng, served, now))
        step(f"indexes ({len(definitions)}, created again)", lambda: [cursor.execute(d) for d in definitions] and 0)
    connection.close()  # the session settings above must not leak into the timed requests
    with connection.cursor() as cursor:
        step("VACUUM ANALYZE", lambda: cursor.execute("VACUUM (ANALYZE)") and 0)
        report["seconds"] = round(time.perf_counter() - started, 1)
        marker = json.dumps({SEED_MARKER: {"cars": c.cars, "days": c.days, "now": now.isoformat()}})
        name = connection.settings_dict["NAME"]
        cursor.execute(f"""COMMENT ON DATABASE "{name}" IS '{marker.replace("'", "''")}'""")
    return report


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


# --- disk, with and without retention ---------------------------------------------------------------------

# (label, models): what the retention figures show, each the sum of its tables.
DISK_GROUPS = (
    ("inbound events", ("bookings.InboundEvent",)),
    ("predictions", ("predictions.Prediction",)),
    ("outbox + attempts + items", ("callbacks.CallbackOutbox", "callbacks.CallbackAttempt", "callbacks.CallbackItem")),
    ("readings", ("bookings.BatteryReading",)),
    ("bookings", ("bookings.Booking",)),
    ("outcomes", ("learning.BookingOutcome",)),
)
MB, SCALE_TO_CARS = 2**20, 1000


def live_bytes(labels: tuple[str, ...]) -> tuple[int, int]:
    """Rows and bytes (heap, TOAST, indexes) of the tables' live rows, as if freshly compacted.

    Each table is copied with its storage, constraints and indexes, and the copy measured: the size VACUUM FULL
    would leave, whatever dead rows autovacuum has not reclaimed yet.
    """
    from django.apps import apps
    from django.db import connection

    rows = size = 0
    with connection.cursor() as cursor:
        for table in (apps.get_model(label)._meta.db_table for label in labels):
            copy = f"bench_copy_{table}"[:63]
            cursor.execute(f'DROP TABLE IF EXISTS "{copy}"')
            cursor.execute(f'CREATE TABLE "{copy}" (LIKE "{table}" INCLUDING ALL)')
            cursor.execute(f'INSERT INTO "{copy}" SELECT * FROM "{table}"')
            cursor.execute(f'REINDEX TABLE "{copy}"')
            cursor.execute(f'SELECT count(*), pg_total_relation_size(%s) FROM "{copy}"', [copy])
            n, b = cursor.fetchone()
            cursor.execute(f'DROP TABLE "{copy}"')
            rows, size = rows + n, size + b
    return rows, size


def retention_measured(config: argparse.Namespace) -> dict[str, Any]:
    """Each group's live rows and bytes, then `retention_run` as of now (`manage.py prune_data`), then again."""
    from django.utils import timezone

    from bookings.models import Vehicle
    from callbacks.retention import retention_run, retention_windows

    before = {label: live_bytes(models) for label, models in DISK_GROUPS}
    started = time.perf_counter()
    removed = retention_run(now=timezone.now())
    seconds = round(time.perf_counter() - started, 1)
    after = {label: live_bytes(models) for label, models in DISK_GROUPS}
    cars = Vehicle.objects.count()  # what was seeded: --cars rounded up to whole copies of the replayed cars
    figures = {"cars": cars, "days": config.days, "windows_days": retention_windows(), "run_seconds": seconds}
    return figures | {"removed": removed, "before": before, "after": after}


def retention_table(figures: dict[str, Any]) -> str:
    """The disk of the seeded history, scaled to SCALE_TO_CARS cars, without retention and with it."""
    scale, months = SCALE_TO_CARS / figures["cars"], figures["days"] / 30.4
    rows = [["table", "rows", "no retention MB", "MB/month", "with retention MB", "kept", "bytes/row"]]
    totals = [0.0, 0.0]
    for label, _ in DISK_GROUPS:
        (n, raw), (_, kept) = figures["before"][label], figures["after"][label]
        totals = [totals[0] + raw * scale / MB, totals[1] + kept * scale / MB]
        cells = [f"{n * scale:,.0f}", f"{raw * scale / MB:,.1f}", f"{raw * scale / MB / months:,.1f}"]
        rows.append([label, *cells, f"{kept * scale / MB:,.1f}", f"{kept / raw:.0%}", f"{raw / max(n, 1):,.0f}"])
    share = totals[1] / totals[0] if totals[0] else 0.0
    total = [f"{totals[0]:,.1f}", f"{totals[0] / months:,.1f}", f"{totals[1]:,.1f}", f"{share:.0%}"]
    rows.append(["total", "", *total, ""])
    head = (
        f"{figures['days']} days of {figures['cars']} cars scaled x{scale:g} to {SCALE_TO_CARS} cars; live rows "
        f"compacted, MB = MiB; retention as of now (windows in days {figures['windows_days']}) took "
        f"{figures['run_seconds']} s and removed {figures['removed']}"
    )
    return "\n".join([head, "", text_table(rows)])


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
        payload["seed"] = seed(config, now)
        print(f"seeded in {payload['seed']['seconds']:.0f} s", flush=True)
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
        if config.retention:
            print("\nretention: measuring the tables, pruning as of now, measuring again ...", flush=True)
            payload["retention"] = retention_measured(config)
            print(retention_table(payload["retention"]))
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
