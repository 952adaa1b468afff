"""End-to-end latency of every batterypred endpoint, over HTTP, against a real gunicorn and Postgres.

What it measures
    The time one client waits for each endpoint, measured sequentially (one request at a time)
    from send to the last byte of the response, with `http.client` reusing one connection
    object. gunicorn's default sync worker closes the connection after every response, so each
    timed call includes a loopback TCP connect; the number of connections opened is printed.

    Timed, N calls each (`--calls`, default 2000; `--quick` uses 200):
      * POST /api/v1/predict, historical mode (no current level; the car has readings and a few
        scheduled bookings before the target) and real-time mode (current_battery_level,
        current_timestamp and 2 intermediate_bookings);
      * POST /api/v1/predict/batch with 10 bookings;
      * GET /api/v1/predictions/{booking_id}, GET /api/v1/vehicle/{id}/timeline,
        GET /api/v1/model/info, GET /health;
      * the five booking webhooks, each carrying `future_bookings` with the car's 10 future
        bookings (the scenario "an event with 10 future bookings": every event re-predicts them).

    Every event uses its own booking id (so it is applied, never an idempotent replay), the
    calls rotate over the whole fleet, and each booking follows a valid lifecycle: created ->
    modified -> started -> ended, and a second booking created (untimed) -> cancelled, all in
    one 6-hour slot of simulated time per car and round, before the car's 10 future bookings.

How it works
    1. Drops and creates a Postgres database (default `batterypred_bench` on 127.0.0.1:5432,
       `--database-url` to use another), migrates it and creates an API key.
    2. Starts `gunicorn batterypred.wsgi --workers 2` on a free port (DJANGO_DEBUG=0, a random
       secret key, API_RATE_LIMIT=1000000/min, LOG_LEVEL=WARNING), its log in a temp file.
    3. Seeds a fleet over HTTP (default 50 cars, 3 completed bookings each, 10 future bookings
       each), runs the event rounds, then the predict and read endpoints.
    4. Prints a table (endpoint, calls, p50/p95/p99 ms, errors, the project's target) and writes
       it as JSON to bench/results/endpoints.json; stops gunicorn and drops the database (unless
       `--keep`). Any failed call (not HTTP 200, or an event whose status is not "success") or a
       traceback in the server log is reported, with the log's tail, and the exit status is 1.

Run it
    make bench                                   # = .venv/bin/python bench/endpoints.py
    .venv/bin/python bench/endpoints.py --quick  # 200 calls per endpoint
    .venv/bin/python bench/endpoints.py --calls 5000 --cars 100 --keep
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import platform
import random
import re
import secrets
import signal
import socket
import string
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "endpoints.json"
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/batterypred_bench"
HOST = "127.0.0.1"
WORKERS = 2

HISTORY_SLOTS = 3  # completed bookings per car before the timed rounds
FUTURE_BOOKINGS = 10  # the car's future bookings every event carries
BATCH_SIZE = 10
SLOT = timedelta(hours=6)  # simulated time per car and round
USERS = 200

PREDICT_TARGET_MS = 10.0
EVENT_TARGET_MS = 20.0


# --- configuration and machine -------------------------------------------------------------------


@dataclass(frozen=True)
class Config:
    calls: int
    cars: int
    warmup: int
    database_url: str
    keep: bool
    seed: int
    output: Path


def parse_args(argv: list[str] | None = None) -> Config:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=2000, help="timed calls per endpoint (default 2000)")
    parser.add_argument("--quick", action="store_true", help="200 calls per endpoint")
    parser.add_argument("--cars", type=int, default=50, help="fleet size (default 50)")
    parser.add_argument("--warmup", type=int, default=10, help="untimed calls per read/predict endpoint first")
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL, help="database to (re)create and use")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    parser.add_argument("--seed", type=int, default=42, help="random seed of the generated fleet")
    parser.add_argument("--output", type=Path, default=RESULTS, help="JSON results file")
    args = parser.parse_args(argv)
    calls = 200 if args.quick else args.calls
    if calls < 1 or args.cars < BATCH_SIZE:
        parser.error(f"--calls must be >= 1 and --cars >= {BATCH_SIZE}")
    return Config(calls, args.cars, max(args.warmup, 0), args.database_url, args.keep, args.seed, args.output)


def machine_info() -> dict[str, Any]:
    return {
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "date": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
    }


class BenchError(RuntimeError):
    """The benchmark could not be set up or run to the end."""


# --- database, migrations, API key ------------------------------------------------------------------


def database_name(url: str) -> str:
    name = urlsplit(url).path.lstrip("/")
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,62}", name):
        raise BenchError(f"database name {name!r} in {url} is not a plain identifier")
    return name


def maintenance_url(url: str) -> str:
    """The same server, connected to the `postgres` database (to create and drop others)."""
    parts = urlsplit(url)
    return urlunsplit(("postgresql", parts.netloc, "/postgres", "", ""))


def psql(url: str, sql: str) -> str:
    done = subprocess.run(
        ["psql", maintenance_url(url), "-v", "ON_ERROR_STOP=1", "-tAc", sql],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise BenchError(f"psql failed ({sql}): {done.stderr.strip()}")
    return done.stdout.strip()


def database_create(url: str) -> str:
    name = database_name(url)
    database_drop(url)
    psql(url, f'CREATE DATABASE "{name}"')
    return psql(url, "SHOW server_version")


def database_drop(url: str) -> None:
    psql(url, f'DROP DATABASE IF EXISTS "{database_name(url)}" WITH (FORCE)')


def server_env(database_url: str) -> dict[str, str]:
    alphabet = string.ascii_letters + string.digits
    env = dict(os.environ)
    env.update(
        {
            "DATABASE_URL": database_url,
            "DJANGO_DEBUG": "0",
            "DJANGO_SECRET_KEY": "".join(secrets.choice(alphabet) for _ in range(50)),
            "API_RATE_LIMIT": "1000000/min",
            "LOG_LEVEL": "WARNING",
            # Production settings, served over plain HTTP on loopback: no redirect to HTTPS, no secure-only cookies.
            "DJANGO_SECURE_SSL_REDIRECT": "0",
            "DJANGO_SECURE_COOKIES": "0",
        }
    )
    if not (env.get("ML_CALLBACK_URL") and env.get("ML_WEBHOOK_SECRET")):
        env["ML_CALLBACKS_DISABLED"] = "1"  # the benchmarks measure the service, not deliveries to Laravel
    return env


def manage(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise BenchError(f"manage.py {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return done.stdout


def api_key_create(env: dict[str, str]) -> str:
    lines = [line for line in manage(env, "create_api_key", f"bench-{int(time.time())}").splitlines() if line]
    if not lines:
        raise BenchError("create_api_key printed no key")
    return lines[-1].strip()


# --- gunicorn ----------------------------------------------------------------------------------------


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def gunicorn_path() -> Path:
    venv = ROOT / ".venv" / "bin" / "gunicorn"
    return venv if venv.exists() else Path(sys.executable).with_name("gunicorn")


def server_start(env: dict[str, str], workers: int = WORKERS, extra: tuple[str, ...] = ()) -> Server:
    """gunicorn on a free port with its output in a temporary log (bench/load.py passes more workers)."""
    port = free_port()
    fd, log_name = tempfile.mkstemp(prefix="batterypred-bench-gunicorn-", suffix=".log")
    with os.fdopen(fd, "wb") as log:
        process = subprocess.Popen(
            [str(gunicorn_path()), "batterypred.wsgi", "--bind", f"{HOST}:{port}", "--workers", str(workers), *extra],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Server(process, port, Path(log_name))


def server_wait_healthy(server: Server, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise BenchError(f"gunicorn exited with status {server.process.returncode}")
        conn = http.client.HTTPConnection(HOST, server.port, timeout=2)
        try:
            conn.request("GET", "/health")
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        finally:
            conn.close()
        time.sleep(0.1)
    raise BenchError(f"GET /health did not answer 200 within {timeout:.0f} s")


def server_stop(server: Server) -> None:
    """Stop the gunicorn master we started (it stops its workers), killing it if it hangs."""
    if server.process.poll() is not None:
        return
    server.process.send_signal(signal.SIGTERM)
    try:
        server.process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait(timeout=5)


def log_tail(path: Path, lines: int = 60) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as exc:
        return f"(cannot read {path}: {exc})"


def log_first_error(path: Path, lines: int = 80) -> str | None:
    """The first error the server logged (Django's "Internal Server Error" and its traceback)."""
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return None
    first = next((i for i, line in enumerate(text) if " ERROR " in line or line.startswith("Traceback")), None)
    return None if first is None else "\n".join(text[first : first + lines])


def log_tracebacks(path: Path) -> int:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return 0
    return text.count("Traceback (most recent call last)")


# --- HTTP client ------------------------------------------------------------------------------------


class CountingConnection(http.client.HTTPConnection):
    """An HTTPConnection that counts how often it had to (re)connect."""

    connects = 0

    def connect(self) -> None:
        super().connect()
        self.connects += 1


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes
    ms: float

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            return None


class Client:
    """One persistent connection object; http.client reopens it when the server closed it."""

    def __init__(self, port: int, api_key: str) -> None:
        self.conn = CountingConnection(HOST, port, timeout=60)
        self.headers = {"X-API-Key": api_key, "Accept": "application/json"}

    def request(self, method: str, path: str, body: Any = None) -> Reply:
        payload = None if body is None else json.dumps(body).encode()
        headers = dict(self.headers)
        if payload is not None:
            headers["Content-Type"] = "application/json"
        start = time.perf_counter()
        try:
            self.conn.request(method, path, body=payload, headers=headers)
            response = self.conn.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException) as exc:
            self.conn.close()
            return Reply(0, f"{type(exc).__name__}: {exc}".encode(), (time.perf_counter() - start) * 1000)
        return Reply(response.status, data, (time.perf_counter() - start) * 1000)

    def close(self) -> None:
        self.conn.close()


# --- recording --------------------------------------------------------------------------------------


@dataclass
class Endpoint:
    name: str
    target_p50_ms: float | None = None
    timings: list[float] = field(default_factory=list)
    errors: int = 0


def percentile(sorted_values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    if not sorted_values:
        return math.nan
    position = (len(sorted_values) - 1) * q
    low = math.floor(position)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (position - low)


def summary(endpoint: Endpoint) -> dict[str, Any]:
    values = sorted(endpoint.timings)
    p50 = percentile(values, 0.50)
    row: dict[str, Any] = {
        "endpoint": endpoint.name,
        "calls": len(values),
        "p50_ms": round(p50, 2),
        "p95_ms": round(percentile(values, 0.95), 2),
        "p99_ms": round(percentile(values, 0.99), 2),
        "errors": endpoint.errors,
        "target": None,
        "target_met": None,
    }
    if endpoint.target_p50_ms is not None:
        row["target"] = f"p50 < {endpoint.target_p50_ms:g} ms"
        row["target_met"] = p50 < endpoint.target_p50_ms and endpoint.errors == 0
    return row


class Bench:
    """Sends the calls, times the timed ones and checks every answer."""

    MAX_SAMPLES_PER_ENDPOINT = 3
    MAX_SAMPLES = 30

    def __init__(self, client: Client) -> None:
        self.client = client
        self.endpoints: dict[str, Endpoint] = {}
        self.setup_calls = 0
        self.setup_errors = 0
        self.failures: list[dict[str, Any]] = []
        self._samples: dict[str, int] = {}

    def endpoint(self, name: str, target_p50_ms: float | None = None) -> Endpoint:
        return self.endpoints.setdefault(name, Endpoint(name, target_p50_ms))

    def call(self, name: str | None, method: str, path: str, body: Any = None, *, event: bool = False) -> Any:
        """Send one call; time it under `name` (None: an untimed setup or warm-up call)."""
        reply = self.client.request(method, path, body)
        data = reply.json()
        problem = self._problem(reply, data, event=event)
        if name is None:
            self.setup_calls += 1
            self.setup_errors += problem is not None
        else:
            endpoint = self.endpoints[name]
            endpoint.timings.append(reply.ms)
            endpoint.errors += problem is not None
        if problem is not None:
            self._record_failure(name or f"setup {method} {path.rsplit('/', 1)[0]}", method, path, body, reply, problem)
        return data

    @staticmethod
    def _problem(reply: Reply, data: Any, *, event: bool) -> str | None:
        if reply.status != 200:
            return f"HTTP {reply.status}"
        if data is None:
            return "response is not JSON"
        if event and (not isinstance(data, dict) or data.get("status") != "success"):
            return f"event status {data.get('status') if isinstance(data, dict) else data!r}"
        return None

    def _record_failure(self, name: str, method: str, path: str, body: Any, reply: Reply, problem: str) -> None:
        seen = self._samples.get(name, 0)
        self._samples[name] = seen + 1
        if seen >= self.MAX_SAMPLES_PER_ENDPOINT or len(self.failures) >= self.MAX_SAMPLES:
            return
        self.failures.append(
            {
                "endpoint": name,
                "problem": problem,
                "request": f"{method} {path}",
                "request_body": body,
                "status": reply.status,
                "response_body": reply.body.decode(errors="replace")[:3000],
            }
        )

    @property
    def errors(self) -> int:
        return self.setup_errors + sum(e.errors for e in self.endpoints.values())


# --- the simulated fleet ------------------------------------------------------------------------------


def iso(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Planned:
    booking_id: str
    user_id: str
    starts_at: datetime
    ends_at: datetime

    def as_item(self) -> dict[str, str]:
        return {
            "booking_id": self.booking_id,
            "user_id": self.user_id,
            "starts_at": iso(self.starts_at),
            "ends_at": iso(self.ends_at),
        }


@dataclass(frozen=True)
class Trip:
    battery_at_start: float
    battery_at_end: float
    mileage_at_start: float
    mileage_at_end: float
    charging_at_end: bool


@dataclass
class Car:
    index: int
    vehicle_id: str
    future: list[Planned]
    level: float
    odometer: float
    plugged: bool = False
    parked_since: datetime | None = None

    def future_items(self) -> list[dict[str, str]]:
        return [p.as_item() for p in self.future]

    def drive(self, start: datetime, end: datetime, rng: random.Random) -> Trip:
        """Advance the car's true level through the parked gap and the trip; return the trip's figures."""
        if self.parked_since is not None:
            hours = (start - self.parked_since).total_seconds() / 3600
            self.level = min(100.0, self.level + 11.0 * hours) if self.plugged else self.level - 0.15 * hours
        self.level = round(max(self.level, 15.0), 1)
        hours = (end - start).total_seconds() / 3600
        drain = min(self.level - 5.0, rng.uniform(4.0, 12.0) * hours)
        km = drain * rng.uniform(1.2, 1.8)
        trip = Trip(
            battery_at_start=self.level,
            battery_at_end=round(self.level - drain, 1),
            mileage_at_start=round(self.odometer, 1),
            mileage_at_end=round(self.odometer + km, 1),
            charging_at_end=rng.random() < 0.35,
        )
        self.level, self.odometer = trip.battery_at_end, trip.mileage_at_end
        self.plugged, self.parked_since = trip.charging_at_end, end
        return trip


@dataclass
class Fleet:
    cars: list[Car]
    origin: datetime  # start of simulated slot 0 (all slots end before `now`)
    now: datetime
    rng: random.Random

    def slot_start(self, car: Car, slot: int) -> datetime:
        return self.origin + slot * SLOT + timedelta(minutes=5 * (car.index % 12))

    def user(self) -> str:
        return f"user-{self.rng.randrange(USERS)}"


def fleet_build(cars: int, rounds: int, now: datetime, rng: random.Random) -> Fleet:
    origin = now - (HISTORY_SLOTS + rounds) * SLOT - timedelta(hours=1)
    fleet = Fleet([], origin, now, rng)
    for index in range(cars):
        vehicle_id = str(1000 + index)
        first = now + timedelta(hours=12, minutes=5 * (index % 12))
        future = [
            Planned(
                booking_id=f"F-{vehicle_id}-{k}",
                user_id=fleet.user(),
                starts_at=first + k * timedelta(hours=10),
                ends_at=first + k * timedelta(hours=10) + timedelta(hours=2 + k % 3),
            )
            for k in range(FUTURE_BOOKINGS)
        ]
        fleet.cars.append(Car(index, vehicle_id, future, level=rng.uniform(60, 95), odometer=rng.uniform(5e3, 4e4)))
    return fleet


# --- event bodies ------------------------------------------------------------------------------------


def event_body(car: Car, booking: Planned, **fields: Any) -> dict[str, Any]:
    """The fields every event shares (booking, car, the car's 10 future bookings) plus `fields`."""
    return {
        "booking_id": booking.booking_id,
        "vehicle_id": car.vehicle_id,
        **fields,
        "future_bookings": car.future_items(),
    }


def created_body(car: Car, booking: Planned) -> dict[str, Any]:
    return event_body(
        car, booking, user_id=booking.user_id, starts_at=iso(booking.starts_at), ends_at=iso(booking.ends_at)
    )


def modified_body(car: Car, booking: Planned, modification_type: str) -> dict[str, Any]:
    return event_body(
        car,
        booking,
        user_id=booking.user_id,
        new_starts_at=iso(booking.starts_at),
        new_ends_at=iso(booking.ends_at),
        modification_type=modification_type,
    )


def started_body(car: Car, booking: Planned, trip: Trip) -> dict[str, Any]:
    return event_body(
        car, booking, actual_battery_at_start=trip.battery_at_start, actual_started_at=iso(booking.starts_at)
    )


def ended_body(car: Car, booking: Planned, trip: Trip) -> dict[str, Any]:
    return event_body(
        car,
        booking,
        user_id=booking.user_id,
        starts_at=iso(booking.starts_at),
        ends_at=iso(booking.ends_at),
        battery_at_start=trip.battery_at_start,
        battery_at_end=trip.battery_at_end,
        mileage_at_start=trip.mileage_at_start,
        mileage_at_end=trip.mileage_at_end,
        charging_at_end=int(trip.charging_at_end),
    )


def cancelled_body(car: Car, booking: Planned) -> dict[str, Any]:
    return event_body(car, booking)


EVENTS = "/api/v1/events/"
CREATED = "POST /api/v1/events/booking-created"
MODIFIED = "POST /api/v1/events/booking-modified"
STARTED = "POST /api/v1/events/booking-started"
ENDED = "POST /api/v1/events/booking-ended"
CANCELLED = "POST /api/v1/events/booking-cancelled"
PREDICT_HISTORICAL = "POST /api/v1/predict (historical)"
PREDICT_REAL_TIME = "POST /api/v1/predict (real-time, 2 intermediate)"
PREDICT_BATCH = "POST /api/v1/predict/batch (10 bookings)"
PREDICTION = "GET /api/v1/predictions/{booking_id}"
TIMELINE = "GET /api/v1/vehicle/{id}/timeline"
MODEL_INFO = "GET /api/v1/model/info"
HEALTH = "GET /health"


# --- phases ------------------------------------------------------------------------------------------


def booking_lifecycle(bench: Bench, fleet: Fleet, car: Car, slot: int) -> None:
    """Seed one completed booking: created, started and ended (untimed)."""
    start = fleet.slot_start(car, slot) + timedelta(hours=1)
    booking = Planned(f"H-{car.vehicle_id}-{slot}", fleet.user(), start, start + timedelta(hours=2))
    trip = car.drive(booking.starts_at, booking.ends_at, fleet.rng)
    bench.call(None, "POST", EVENTS + "booking-created", created_body(car, booking), event=True)
    bench.call(None, "POST", EVENTS + "booking-started", started_body(car, booking, trip), event=True)
    bench.call(None, "POST", EVENTS + "booking-ended", ended_body(car, booking, trip), event=True)


def seed_fleet(bench: Bench, fleet: Fleet) -> None:
    for slot in range(HISTORY_SLOTS):
        for car in fleet.cars:
            booking_lifecycle(bench, fleet, car, slot)
    if bench.setup_errors:
        raise BenchError(f"seeding the fleet failed ({bench.setup_errors} errors)")


@dataclass
class Round:
    """One car's bookings in one slot: X is created, modified, started and ended; Y created and cancelled."""

    car: Car
    booking: Planned
    modified: Planned
    modification_type: str
    doomed: Planned
    trip: Trip | None = None


def round_plan(fleet: Fleet, car: Car, slot: int, index: int) -> Round:
    t0 = fleet.slot_start(car, slot)
    user = fleet.user()
    booking = Planned(f"X-{car.vehicle_id}-{slot}", user, t0 + timedelta(hours=1), t0 + timedelta(hours=3))
    if index % 2:
        longer = booking.ends_at + timedelta(minutes=30)
        kind, moved = "extended", Planned(booking.booking_id, user, booking.starts_at, longer)
    else:
        shift = timedelta(minutes=30)
        moved_start, moved_end = booking.starts_at + shift, booking.ends_at + shift
        kind, moved = "rescheduled", Planned(booking.booking_id, user, moved_start, moved_end)
    doomed = Planned(f"Y-{car.vehicle_id}-{slot}", fleet.user(), t0 + timedelta(hours=4), t0 + timedelta(hours=5))
    return Round(car, booking, moved, kind, doomed)


def run_events(bench: Bench, fleet: Fleet, calls: int) -> None:
    """`calls` of each event, a wave over the fleet at a time, each booking's lifecycle in order."""
    for name in (CREATED, MODIFIED, STARTED, ENDED, CANCELLED):
        bench.endpoint(name, EVENT_TARGET_MS)
    ncars = len(fleet.cars)
    for wave_start in range(0, calls, ncars):
        slot = HISTORY_SLOTS + wave_start // ncars
        wave = [
            round_plan(fleet, fleet.cars[i % ncars], slot, i) for i in range(wave_start, min(calls, wave_start + ncars))
        ]
        for r in wave:
            bench.call(CREATED, "POST", EVENTS + "booking-created", created_body(r.car, r.booking), event=True)
        for r in wave:
            body = modified_body(r.car, r.modified, r.modification_type)
            bench.call(MODIFIED, "POST", EVENTS + "booking-modified", body, event=True)
        for r in wave:
            r.trip = r.car.drive(r.modified.starts_at, r.modified.ends_at, fleet.rng)
            bench.call(STARTED, "POST", EVENTS + "booking-started", started_body(r.car, r.modified, r.trip), event=True)
        for r in wave:
            assert r.trip is not None
            bench.call(ENDED, "POST", EVENTS + "booking-ended", ended_body(r.car, r.modified, r.trip), event=True)
        for r in wave:
            bench.call(None, "POST", EVENTS + "booking-created", created_body(r.car, r.doomed), event=True)
        for r in wave:
            bench.call(CANCELLED, "POST", EVENTS + "booking-cancelled", cancelled_body(r.car, r.doomed), event=True)


def historical_body(fleet: Fleet, i: int) -> dict[str, Any]:
    """A car with known readings; the target is its 4th to 10th future booking (3-9 scheduled before it)."""
    car = fleet.cars[i % len(fleet.cars)]
    target = car.future[3 + (i // len(fleet.cars)) % (FUTURE_BOOKINGS - 3)]
    return {
        "vehicle_id": car.vehicle_id,
        "user_id": target.user_id,
        "booking_id": target.booking_id,
        "booking_start_time": iso(target.starts_at),
    }


def real_time_body(fleet: Fleet, i: int) -> dict[str, Any]:
    """The level now, and the car's first two future bookings before the target (its third)."""
    car = fleet.cars[i % len(fleet.cars)]
    target = car.future[2]
    return {
        "vehicle_id": car.vehicle_id,
        "user_id": target.user_id,
        "booking_id": target.booking_id,
        "booking_start_time": iso(target.starts_at),
        "current_battery_level": round(fleet.rng.uniform(30, 95), 1),
        "current_timestamp": iso(fleet.now + timedelta(seconds=i)),
        "intermediate_bookings": [p.as_item() for p in car.future[:2]],
    }


def batch_body(fleet: Fleet, i: int) -> dict[str, Any]:
    return {"bookings": [historical_body(fleet, i * BATCH_SIZE + j) for j in range(BATCH_SIZE)]}


def timed_loop(name: str, calls: int, warmup: int, send: Callable[[str | None, int], None]) -> None:
    for i in range(warmup):
        send(None, i)
    for i in range(calls):
        send(name, warmup + i)


def run_predicts(bench: Bench, fleet: Fleet, calls: int, warmup: int) -> None:
    bench.endpoint(PREDICT_HISTORICAL, PREDICT_TARGET_MS)
    bench.endpoint(PREDICT_REAL_TIME, PREDICT_TARGET_MS)
    bench.endpoint(PREDICT_BATCH)

    def post(path: str, build: Callable[[Fleet, int], dict[str, Any]]) -> Callable[[str | None, int], None]:
        return lambda name, i: bench.call(name, "POST", path, build(fleet, i))

    timed_loop(PREDICT_HISTORICAL, calls, warmup, post("/api/v1/predict", historical_body))
    timed_loop(PREDICT_REAL_TIME, calls, warmup, post("/api/v1/predict", real_time_body))
    timed_loop(PREDICT_BATCH, calls, warmup, post("/api/v1/predict/batch", batch_body))


def future_booking_ids(fleet: Fleet) -> Iterator[str]:
    while True:
        for k in range(FUTURE_BOOKINGS):
            for car in fleet.cars:
                yield car.future[k].booking_id


def run_reads(bench: Bench, fleet: Fleet, calls: int, warmup: int) -> None:
    bench.endpoint(PREDICTION)
    bench.endpoint(TIMELINE)
    bench.endpoint(MODEL_INFO)
    bench.endpoint(HEALTH)
    ids = future_booking_ids(fleet)
    cars = fleet.cars

    def get(path: Callable[[int], str]) -> Callable[[str | None, int], None]:
        return lambda name, i: bench.call(name, "GET", path(i))

    timed_loop(PREDICTION, calls, warmup, get(lambda i: f"/api/v1/predictions/{next(ids)}"))
    timed_loop(TIMELINE, calls, warmup, get(lambda i: f"/api/v1/vehicle/{cars[i % len(cars)].vehicle_id}/timeline"))
    timed_loop(MODEL_INFO, calls, warmup, get(lambda i: "/api/v1/model/info"))
    timed_loop(HEALTH, calls, warmup, get(lambda i: "/health"))


# --- report ------------------------------------------------------------------------------------------


def table(rows: list[dict[str, Any]]) -> str:
    headers = ["endpoint", "calls", "p50 ms", "p95 ms", "p99 ms", "errors", "target"]
    cells = [
        [
            r["endpoint"],
            str(r["calls"]),
            f"{r['p50_ms']:.2f}",
            f"{r['p95_ms']:.2f}",
            f"{r['p99_ms']:.2f}",
            str(r["errors"]),
            "" if r["target"] is None else f"{r['target']} ({'met' if r['target_met'] else 'MISSED'})",
        ]
        for r in rows
    ]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(headers)]

    def line(values: list[str]) -> str:
        return "  ".join(
            v.ljust(w) if i in (0, 6) else v.rjust(w) for i, (v, w) in enumerate(zip(values, widths, strict=True))
        )

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(headers), rule, *(line(c) for c in cells)])


def machine_line(machine: dict[str, Any]) -> str:
    return (
        f"machine: {machine['cpu_count']} CPUs, Python {machine['python']}, {machine['platform']}, "
        f"Postgres {machine.get('postgres', '?')}, {machine['date']}"
    )


def report_failures(bench: Bench, server: Server | None) -> None:
    for failure in bench.failures:
        print(f"\nFAILED {failure['endpoint']}: {failure['problem']}", file=sys.stderr)
        print(f"  request: {failure['request']}", file=sys.stderr)
        if failure["request_body"] is not None:
            print(f"  body: {json.dumps(failure['request_body'])}", file=sys.stderr)
        print(f"  response ({failure['status']}): {failure['response_body']}", file=sys.stderr)
    if server is None:
        return
    first = log_first_error(server.log_path)
    if first:
        print(f"\n--- first error in the gunicorn log {server.log_path} ---\n{first}", file=sys.stderr)
    print(f"\n--- tail of the gunicorn log {server.log_path} ---\n{log_tail(server.log_path)}", file=sys.stderr)


def write_json(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2) + "\n")


# --- main --------------------------------------------------------------------------------------------


def run(bench: Bench, config: Config) -> dict[str, Any]:
    """Seed the fleet, run every phase; return the config figures of the run."""
    rng = random.Random(config.seed)
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    fleet = fleet_build(config.cars, math.ceil(config.calls / config.cars), now, rng)
    started = time.perf_counter()
    print(f"seeding {config.cars} cars ...", flush=True)
    seed_fleet(bench, fleet)
    print(f"events: {config.calls} calls each ...", flush=True)
    run_events(bench, fleet, config.calls)
    print(f"predict: {config.calls} calls each ...", flush=True)
    run_predicts(bench, fleet, config.calls, config.warmup)
    print(f"reads: {config.calls} calls each ...", flush=True)
    run_reads(bench, fleet, config.calls, config.warmup)
    return {
        "calls": config.calls,
        "cars": config.cars,
        "future_bookings_per_event": FUTURE_BOOKINGS,
        "batch_size": BATCH_SIZE,
        "warmup": config.warmup,
        "gunicorn_workers": WORKERS,
        "client": "sequential, one http.client connection object",
        "tcp_connections_opened": bench.client.conn.connects,
        "setup_calls": bench.setup_calls,
        "setup_errors": bench.setup_errors,
        "wall_seconds": round(time.perf_counter() - started, 1),
    }


ORDER = [CREATED, MODIFIED, STARTED, ENDED, CANCELLED, PREDICT_HISTORICAL, PREDICT_REAL_TIME, PREDICT_BATCH]
ORDER += [PREDICTION, TIMELINE, MODEL_INFO, HEALTH]


def print_report(machine: dict[str, Any], payload: dict[str, Any], output: Path) -> None:
    cfg = payload["config"]
    print()
    print(machine_line(machine))
    print(
        f"fleet: {cfg['cars']} cars, {FUTURE_BOOKINGS} future bookings each; {cfg['calls']} timed calls per "
        f"endpoint; {cfg['setup_calls']} setup calls; {cfg['tcp_connections_opened']} TCP connections "
        f"(gunicorn's sync workers close after each response); {cfg['wall_seconds']} s"
    )
    print(table(payload["results"]))
    print(f"\nresults written to {output}")


def main(argv: list[str] | None = None) -> int:
    config = parse_args(argv)
    machine = machine_info()
    server: Server | None = None
    bench: Bench | None = None
    created = ok = False
    try:
        machine["postgres"] = database_create(config.database_url)
        created = True
        env = server_env(config.database_url)
        print(f"database {database_name(config.database_url)} created; migrating ...", flush=True)
        manage(env, "migrate", "--noinput", "-v0")
        api_key = api_key_create(env)
        server = server_start(env)
        server_wait_healthy(server)
        print(f"gunicorn ({WORKERS} workers) on {HOST}:{server.port}, log {server.log_path}", flush=True)
        bench = Bench(Client(server.port, api_key))
        run_config = run(bench, config)
        bench.client.close()
        server_stop(server)
        tracebacks = log_tracebacks(server.log_path)
        payload = {
            "machine": machine,
            "config": run_config,
            "results": [summary(bench.endpoints[name]) for name in ORDER if name in bench.endpoints],
            "server_log_tracebacks": tracebacks,
            "failures": bench.failures,
        }
        write_json(config.output, payload)
        print_report(machine, payload, config.output)
        ok = bench.errors == 0 and tracebacks == 0
        if not ok:
            print(f"\n{bench.errors} failed calls, {tracebacks} tracebacks in the server log", file=sys.stderr)
            report_failures(bench, server)
    except BenchError as exc:
        print(f"\nbenchmark failed: {exc}", file=sys.stderr)
        if bench is not None:
            report_failures(bench, server)
        elif server is not None:
            print(f"\n--- tail of {server.log_path} ---\n{log_tail(server.log_path)}", file=sys.stderr)
    finally:
        if bench is not None:
            bench.client.close()
        if server is not None:
            server_stop(server)
            if ok:
                server.log_path.unlink(missing_ok=True)
        if created and not config.keep:
            database_drop(config.database_url)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
