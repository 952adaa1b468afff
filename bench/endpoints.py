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

    The fleet and its events come from the project's simulator (`core.simulation`, seed `--seed`, its
    parked gaps x 0.3 for a busy fleet), its clock ending now: every booking follows the lifecycle the
    simulator gives it (created, maybe modified, started and ended, or cancelled). The first days are
    sent untimed; then the stream is timed, each call under its event, until N bookings were created
    (the stream's modifications and cancellations are fewer: the table says how many). Each event's
    `future_bookings` holds the car's next 10 simulated bookings.

How it works
    1. Drops and creates a Postgres database (default `batterypred_bench` on 127.0.0.1:5432,
       `--database-url` to use another), migrates it and creates an API key.
    2. Starts `gunicorn batterypred.wsgi --workers 2` on a free port (DJANGO_DEBUG=0, a random
       secret key, API_RATE_LIMIT=1000000/min, LOG_LEVEL=WARNING), its log in a temp file.
    3. Seeds the fleet over HTTP (default 50 cars, 2 days of its stream), times the events, then
       the predict and read endpoints.
    4. Prints a table (endpoint, calls, p50/p95/p99 ms, errors, the project's target) and writes
       it as JSON to bench/results/endpoints.json; stops gunicorn and drops the database (unless
       `--keep`). Any failed call (not HTTP 200, or an event whose status is not "success") or a
       traceback in the server log is reported, with the log's tail, and the exit status is 1.

Run it
    make bench                                     # = .venv/bin/python -m bench.endpoints
    .venv/bin/python -m bench.endpoints --quick    # 200 calls per endpoint
    .venv/bin/python -m bench.endpoints --calls 5000 --cars 100 --keep
"""

from __future__ import annotations

import http.client
import json
import math
import random
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.common import (
    HOST,
    POSTGRES,
    RESULTS,
    BenchError,
    Server,
    api_key_create,
    database_create,
    database_drop,
    database_name,
    iso,
    log_first_error,
    log_tail,
    log_tracebacks,
    machine_info,
    manage,
    parser_for,
    percentile,
    server_env,
    server_start,
    server_stop,
    server_wait_healthy,
    text_table,
    write_json,
)
from core.simulation.fleet import EVENT_PATHS, FleetConfig, SimBooking, Simulation, simulate
from core.simulation.world import World

DEFAULT_DATABASE_URL = POSTGRES + "batterypred_bench"
WORKERS = 2

HISTORY_DAYS = 2  # days of the simulated stream sent untimed before the timed events
# Busy cars (the simulator's parked gaps x 0.3: about 2 bookings a day, few at night), so that a car's 10 future
# bookings span some 5 days, as they did in this bench's scenario before it used the simulator.
WORLD = World(gap_scale=0.3)
BOOKINGS_PER_CAR_DAY = 2.0  # about the simulator's rate in that world, to size the stream
FUTURE_DAYS = 10  # simulated beyond now, for every car's next 10 bookings
FUTURE_BOOKINGS = 10  # the car's future bookings every event carries
BATCH_SIZE = 10

PREDICT_TARGET_MS = 10.0
EVENT_TARGET_MS = 20.0


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
    parser = parser_for(__doc__)
    parser.add_argument("--calls", type=int, default=2000, help="timed calls per endpoint (default 2000)")
    parser.add_argument("--quick", action="store_true", help="200 calls per endpoint")
    parser.add_argument("--cars", type=int, default=50, help="fleet size (default 50)")
    parser.add_argument("--warmup", type=int, default=10, help="untimed calls per read/predict endpoint first")
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL, help="database to (re)create and use")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    parser.add_argument("--seed", type=int, default=42, help="simulator seed of the fleet")
    parser.add_argument("--output", type=Path, default=RESULTS / "endpoints.json", help="JSON results file")
    args = parser.parse_args(argv)
    calls = 200 if args.quick else args.calls
    if calls < 1 or args.cars < BATCH_SIZE:
        parser.error(f"--calls must be >= 1 and --cars >= {BATCH_SIZE}")
    return Config(calls, args.cars, max(args.warmup, 0), args.database_url, args.keep, args.seed, args.output)


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


def summary(endpoint: Endpoint) -> dict[str, Any]:
    values = endpoint.timings
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


@dataclass
class Fleet:
    sim: Simulation
    now: datetime  # where the sent stream ends
    by_car: dict[str, list[SimBooking]]  # every car's bookings by scheduled start
    future: dict[str, list[SimBooking]]  # every car's next bookings after `now`
    rng: random.Random

    @property
    def cars(self) -> list[str]:
        return list(self.by_car)

    def future_items(self, car: str, at: datetime, exclude: str = "") -> list[dict[str, str]]:
        """The car's next 10 bookings not started at `at`, with their times as known then."""
        t, items = self.sim.hours(at), []
        for b in self.by_car[car]:
            if b.booking_id == exclude or b.actual_start <= t or (b.cancelled and b.cancelled_at <= t):
                continue
            items.append(item(self.sim, b, t))
            if len(items) == FUTURE_BOOKINGS:
                break
        return items


def item(sim: Simulation, b: SimBooking, t: float) -> dict[str, str]:
    start, end = b.times_at(t)
    starts_at, ends_at = iso(sim.when(start)), iso(sim.when(end))
    return {"booking_id": b.booking_id, "user_id": b.renter.user_id, "starts_at": starts_at, "ends_at": ends_at}


def fleet_build(cars: int, calls: int, seed: int) -> Fleet:
    """The simulated fleet, its clock ending now, with enough of a stream for `calls` bookings created."""
    days = HISTORY_DAYS + math.ceil(calls / (cars * BOOKINGS_PER_CAR_DAY)) + 1
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    epoch = now - timedelta(days=days)
    config = FleetConfig(cars=cars, renters=4 * cars, days=days + FUTURE_DAYS, seed=seed, epoch=epoch, world=WORLD)
    sim = simulate(config)
    by_car: dict[str, list[SimBooking]] = {}
    for b in sorted(sim.bookings, key=lambda b: (b.start, b.booking_id)):
        by_car.setdefault(b.car.car_id, []).append(b)
    t = sim.hours(now)
    future = {car: [b for b in bs if b.start > t and not b.cancelled][:FUTURE_BOOKINGS] for car, bs in by_car.items()}
    return Fleet(sim, now, by_car, future, random.Random(seed))


NAMES = {kind: f"POST {path}" for kind, path in EVENT_PATHS.items() if kind != "predict"}
PREDICT_HISTORICAL = "POST /api/v1/predict (historical)"
PREDICT_REAL_TIME = "POST /api/v1/predict (real-time, 2 intermediate)"
PREDICT_BATCH = "POST /api/v1/predict/batch (10 bookings)"
PREDICTION = "GET /api/v1/predictions/{booking_id}"
TIMELINE = "GET /api/v1/vehicle/{id}/timeline"
MODEL_INFO = "GET /api/v1/model/info"
HEALTH = "GET /health"


# --- phases ------------------------------------------------------------------------------------------


def run_stream(bench: Bench, fleet: Fleet, calls: int) -> None:
    """The stream up to now: its first days untimed, then each event timed under its kind until `calls` created."""
    for kind in ("created", "modified", "started", "ended", "cancelled"):
        bench.endpoint(NAMES[kind], EVENT_TARGET_MS)
    history = fleet.sim.config.epoch + timedelta(days=HISTORY_DAYS)
    created = bench.endpoints[NAMES["created"]].timings
    for call in fleet.sim.calls:
        if call.at > fleet.now:
            break
        body = call.body
        if call.kind != "predict":
            body = body | {"future_bookings": fleet.future_items(call.vehicle_id, call.at, call.booking_id)}
        timed = call.kind != "predict" and call.at >= history and len(created) < calls
        bench.call(NAMES[call.kind] if timed else None, "POST", call.path, body, event=call.kind != "predict")
    if bench.setup_errors:
        raise BenchError(f"seeding the fleet failed ({bench.setup_errors} errors)")


def historical_body(fleet: Fleet, i: int) -> dict[str, Any]:
    """A car with known readings; the target is its 4th to 10th future booking (3-9 scheduled before it)."""
    car = fleet.cars[i % len(fleet.cars)]
    future = fleet.future[car]
    target = future[min(3 + (i // len(fleet.cars)) % (FUTURE_BOOKINGS - 3), len(future) - 1)]
    return {
        "vehicle_id": car,
        "user_id": target.renter.user_id,
        "booking_id": target.booking_id,
        "booking_start_time": iso(fleet.sim.when(target.start)),
    }


def real_time_body(fleet: Fleet, i: int) -> dict[str, Any]:
    """The level now, and the car's first two future bookings before the target (its third)."""
    car = fleet.cars[i % len(fleet.cars)]
    target, t = fleet.future[car][2], fleet.sim.hours(fleet.now)
    return {
        "vehicle_id": car,
        "user_id": target.renter.user_id,
        "booking_id": target.booking_id,
        "booking_start_time": iso(fleet.sim.when(target.start)),
        "current_battery_level": round(fleet.rng.uniform(30, 95), 1),
        "current_timestamp": iso(fleet.now + timedelta(seconds=i)),
        "intermediate_bookings": [item(fleet.sim, b, t) for b in fleet.future[car][:2]],
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
                if k < len(fleet.future[car]):
                    yield fleet.future[car][k].booking_id


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
    timed_loop(TIMELINE, calls, warmup, get(lambda i: f"/api/v1/vehicle/{cars[i % len(cars)]}/timeline"))
    timed_loop(MODEL_INFO, calls, warmup, get(lambda i: "/api/v1/model/info"))
    timed_loop(HEALTH, calls, warmup, get(lambda i: "/health"))


# --- report ------------------------------------------------------------------------------------------


def table(rows: list[dict[str, Any]]) -> str:
    cells = [["endpoint", "calls", "p50 ms", "p95 ms", "p99 ms", "errors", "target"]]
    for r in rows:
        target = "" if r["target"] is None else f"{r['target']} ({'met' if r['target_met'] else 'MISSED'})"
        figures = [f"{r[key]:.2f}" for key in ("p50_ms", "p95_ms", "p99_ms")]
        cells.append([r["endpoint"], str(r["calls"]), *figures, str(r["errors"]), target])
    return text_table(cells, left=(0, 6))


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


# --- main --------------------------------------------------------------------------------------------


def run(bench: Bench, config: Config) -> dict[str, Any]:
    """Seed the fleet, run every phase; return the config figures of the run."""
    fleet = fleet_build(config.cars, config.calls, config.seed)
    started = time.perf_counter()
    print(f"simulated {config.cars} cars; seeding {HISTORY_DAYS} days, then timing events ...", flush=True)
    run_stream(bench, fleet, config.calls)
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


ORDER = [*(NAMES[k] for k in ("created", "modified", "started", "ended", "cancelled"))]
ORDER += [PREDICT_HISTORICAL, PREDICT_REAL_TIME, PREDICT_BATCH]
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
        server = server_start(env, WORKERS)
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
