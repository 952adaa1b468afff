"""Disk per month of a fleet, per table, on Postgres, with and without retention (callbacks/retention.py).

The question (issue 12, "Growth"): how much disk does each month of a 1,000-car fleet take, and how much of it
does retention give back? This is a benchmark, not a test: it prints its figures.

What it does
    1. Creates a Postgres database (default `batterypred_bench_retention`, dropped and made again), migrates it.
    2. Simulates --cars (60) cars for --days (30) with the fleet simulator (`core.simulation`, seed 7,
       3.75 renters per car as in `manage.py simulate_fleet`), its clock ending now, and replays every call
       (the five booking webhooks and the real-time `/predict` calls) in time order through the whole service,
       in-process with Django's test client and an API key: serializers, event services, cascade, outbox.
       Callbacks are on (ML_CALLBACK_URL set) and delivered by the real outbox code every 200 calls, to a
       Laravel stand-in answering 200 (an httpx MockTransport: no network), so each has its attempt log.
       No trained model serves: the pattern cascade prices (a model changes the numbers, not the rows).
    3. Measures each table with `pg_total_relation_size` (heap, TOAST and indexes) of a compacted copy of its
       live rows (what VACUUM FULL would leave), so the figure is the live data, not dead tuples that
       autovacuum has not reclaimed yet.
    4. Applies retention as it would run once each window has passed (`retention_run(now=...)` with `now`
       moved past the 30-day, 90-day and 180-day windows in turn), measuring after each step.
    5. Scales linearly to --scale-to (1,000) cars: every table here grows with bookings, and the simulator's
       booking rate per car is printed, so the figures can be rescaled to another rate (bytes per booking).

Run it
    .venv/bin/python -m bench.retention                    # 60 cars x 30 days, about 8 minutes on 2 cores
    .venv/bin/python -m bench.retention --cars 20          # a quick look
    .venv/bin/python -m bench.retention --json bench/results/retention.json

The database is dropped at the end unless --keep.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.common import (
    POSTGRES,
    ROOT,
    BenchError,
    database_create,
    database_drop,
    django_setup,
    machine_info,
    manage,
    replay_in_process,
    server_env,
    write_json,
)
from core.simulation.fleet import FleetConfig, simulate

DEFAULT_DATABASE_URL = POSTGRES + "batterypred_bench_retention"
CALLBACK_URL = "http://laravel.internal/api/ml/predictions-updated"
DISPATCH_EVERY = 200  # calls between two runs of the outbox dispatcher
MB = 1024 * 1024

# (label, tables): the groups the report shows, each the sum of its tables.
GROUPS: list[tuple[str, list[str]]] = [
    ("inbound events", ["bookings_inboundevent"]),
    ("predictions", ["predictions_prediction"]),
    ("outbox + attempts", ["predictions_callbackoutbox", "predictions_callbackattempt", "predictions_callbackitem"]),
    ("readings", ["bookings_batteryreading"]),
    ("bookings", ["bookings_booking"]),
    ("outcomes", ["learning_bookingoutcome"]),
]
# Each group's retention windows, in days, and which measurement step removes its part of the month.
STEPS = [("+31 d: bodies, callbacks", 31), ("+91 d: superseded predictions", 91), ("+181 d: event keys", 181)]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_DATABASE_URL))
    parser.add_argument("--cars", type=int, default=60)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--scale-to", type=int, default=1000, help="fleet size the figures are scaled to")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    return parser.parse_args(argv)


def env_for(database_url: str) -> dict[str, str]:
    """Production-like settings for the in-process service, callbacks on, no model (an empty MODEL_DIR)."""
    models = str(ROOT / "data" / "bench-retention-models")
    return server_env(database_url, ML_CALLBACK_URL=CALLBACK_URL, ML_WEBHOOK_SECRET="bench-secret", MODEL_DIR=models)


def sizes(tables: list[str]) -> dict[str, dict[str, int]]:
    """Rows and total bytes (heap + TOAST + indexes) of each table's live rows, as if freshly compacted.

    Each table is copied (same columns, storage, constraints and indexes), its indexes rebuilt, and the copy
    measured: the size VACUUM FULL would leave, without depending on VACUUM, which keeps dead rows as long
    as any transaction on the server (another database's included) is older than them.
    """
    from django.db import connection

    out = {}
    with connection.cursor() as cursor:
        for table in tables:
            copy = f"bench_copy_{table}"[:63]
            cursor.execute(f'DROP TABLE IF EXISTS "{copy}"')
            cursor.execute(f'CREATE TABLE "{copy}" (LIKE "{table}" INCLUDING ALL)')
            cursor.execute(f'INSERT INTO "{copy}" SELECT * FROM "{table}"')
            cursor.execute(f'REINDEX TABLE "{copy}"')
            cursor.execute(f'SELECT count(*), pg_total_relation_size(%s) FROM "{copy}"', [copy])
            rows, size = cursor.fetchone()
            cursor.execute(f'DROP TABLE "{copy}"')
            out[table] = {"rows": rows, "bytes": size}
    return out


def grouped(measured: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    return {
        label: {
            "rows": sum(measured[t]["rows"] for t in tables),
            "bytes": sum(measured[t]["bytes"] for t in tables),
        }
        for label, tables in GROUPS
    }


def replay(cars: int, days: int, seed: int) -> dict[str, float]:
    """Simulate the fleet with its clock ending now and send every call through the service in-process."""
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    config = FleetConfig(cars=cars, renters=round(cars * 3.75), days=days, seed=seed, epoch=end - timedelta(days=days))
    return replay_in_process(simulate(config), dispatch_every=DISPATCH_EVERY)


def run(args: argparse.Namespace) -> dict:
    env = env_for(args.database_url)
    server = database_create(args.database_url)
    manage(env, "migrate", "--noinput")
    django_setup(env)
    from django.utils import timezone
    from django_q.models import OrmQ

    from callbacks.retention import retention_run, retention_windows

    tables = [t for _, group in GROUPS for t in group]
    print(f"Postgres {server}; replaying {args.cars} cars x {args.days} days ...", flush=True)
    fleet = replay(args.cars, args.days, args.seed)
    OrmQ.objects.all().delete()  # the queued deliveries the in-process run never hands to a worker
    print(
        f"  {fleet['calls']} calls ({fleet['calls_4xx']} answered 4xx) in {fleet['replay_seconds']} s; "
        f"{fleet['bookings']} bookings ({fleet['bookings_per_car_day']:.2f} per car per day)",
        flush=True,
    )
    measured = {"month, no retention": grouped(sizes(tables))}
    now = timezone.now()
    removed = {}
    for label, days in STEPS:
        removed[label] = retention_run(now=now + timedelta(days=days))
        measured[label] = grouped(sizes(tables))
    return {
        "machine": machine_info(),
        "postgres": server,
        "config": {"cars": args.cars, "days": args.days, "seed": args.seed, "scale_to": args.scale_to},
        "windows_days": retention_windows(),
        "fleet": fleet,
        "removed": removed,
        "measured": measured,
    }


def held_months(label: str, windows: dict[str, int]) -> list[tuple[str, float]]:
    """Which measurement steps bound a group's in-window part, and for how many months each part is held."""
    month = 30.0
    if label == "inbound events":
        return [
            ("+31 d: bodies, callbacks", windows["inbound_event_bodies"] / month),
            ("+181 d: event keys", windows["inbound_events"] / month),
        ]
    if label == "predictions":
        return [("+91 d: superseded predictions", windows["superseded_predictions"] / month)]
    if label == "outbox + attempts":
        return [("+31 d: bodies, callbacks", windows["delivered_callbacks"] / month)]
    return []


def report(payload: dict) -> str:
    cfg, measured, windows = payload["config"], payload["measured"], payload["windows_days"]
    scale = cfg["scale_to"] / cfg["cars"] * 30 / cfg["days"]
    order = ["month, no retention"] + [label for label, _ in STEPS]
    lines = [
        f"{cfg['cars']} cars x {cfg['days']} days, scaled x{scale:.1f} to {cfg['scale_to']} cars x 30 days "
        f"({payload['fleet']['bookings_per_car_day']:.2f} bookings per car per day); MB = MiB, live rows compacted",
        "",
        f"{'table':<18} {'rows/month':>11} {'no retention':>13} {'kept forever':>13} {'held in window':>15} "
        f"{'after 12 months':>16} {'without':>9} {'B/booking':>10}",
        f"{'':<18} {'(1000 cars)':>11} {'MB/month':>13} {'MB/month':>13} {'MB (steady)':>15} "
        f"{'with (MB)':>16} {'(MB)':>9} {'(no ret.)':>10}",
    ]
    totals = [0.0] * 5
    bookings = payload["fleet"]["bookings"]
    for label, _ in GROUPS:
        steps = {name: measured[name][label]["bytes"] for name in order}
        raw, kept = steps[order[0]], steps[order[-1]]
        held, previous = 0.0, raw
        for name in order[1:]:
            part = previous - steps[name]
            months = dict(held_months(label, windows)).get(name, 0.0)
            held += part * months
            previous = steps[name]
        raw_mb, kept_mb, held_mb = raw * scale / MB, kept * scale / MB, held * scale / MB
        with_12, without_12 = 12 * kept_mb + held_mb, 12 * raw_mb
        for i, value in enumerate((raw_mb, kept_mb, held_mb, with_12, without_12)):
            totals[i] += value
        rows = measured[order[0]][label]["rows"] * scale
        lines.append(
            f"{label:<18} {rows:>11,.0f} {raw_mb:>13.1f} {kept_mb:>13.1f} {held_mb:>15.1f} {with_12:>16.1f} "
            f"{without_12:>9.1f} {raw / bookings:>10.0f}"
        )
    lines.append(
        f"{'total':<18} {'':>11} {totals[0]:>13.1f} {totals[1]:>13.1f} {totals[2]:>15.1f} {totals[3]:>16.1f} "
        f"{totals[4]:>9.1f}"
    )
    lines += ["", "Per table, as measured (rows, MB) at each step (now moved forward past each window):"]
    for label, _ in GROUPS:
        cells = ", ".join(
            f"{name}: {measured[name][label]['rows']:,} / {measured[name][label]['bytes'] / MB:.2f}" for name in order
        )
        lines.append(f"  {label}: {cells}")
    lines += ["", "Removed at each step:"]
    for name, counts in payload["removed"].items():
        lines.append(f"  {name}: " + ", ".join(f"{k} {v}" for k, v in counts.items() if v))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    try:
        payload = run(args)
    except BenchError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    finally:
        if not args.keep:
            from django.db import connections

            connections.close_all()
            database_drop(args.database_url)
    payload["seconds"] = round(time.monotonic() - started, 1)
    print()
    print(report(payload))
    print(f"\n({payload['seconds']} s in all)")
    if args.json:
        write_json(args.json, payload)
    return 0


if __name__ == "__main__":
    sys.exit(main())
