"""Serving speed as shipped: every endpoint's latency and the sustained rates, one gunicorn on Postgres, one run.

What serves
    The configuration `make run` and the Dockerfile serve: the bootstrap champion (`train_model --synthetic`,
    simulator seed 1001, compiled when promoted; `--no-model` serves the pattern cascade and says so), gunicorn
    with --workers (default WEB_CONCURRENCY or 3), `--access-logfile - --timeout 30` and the Prometheus
    multiprocess directory, as scripts/serve.sh starts it; DJANGO_DEBUG=0, API_RATE_LIMIT=1000000/min. The
    report names the predictor that served (GET /api/v1/model/info) and, for every rate, the closed-loop rate of
    GET /health in the same run.

The traffic
    A fleet from the project's simulator (`core.simulation`, seed --seed, parked gaps x 0.3 for a busy fleet:
    about 2 bookings a car a day), every booking through the lifecycle the simulator gives it. Every event carries
    `future_bookings`, the car's next 10 simulated bookings ("an event with 10 future bookings"). The stream's
    first --history-days are sent untimed; then:

    latency  sequential, one http.client connection: the events of the stream, each timed under its kind until
             --calls bookings were created; then --calls each of POST /api/v1/predict in historical mode (the
             car's 4th-10th future booking) and in real-time mode (the level now, 2 intermediate bookings),
             POST /api/v1/predict/batch with 10 bookings, GET /api/v1/predictions/{id}, the car timeline,
             GET /api/v1/model/info and GET /health. Targets: predict p50 < 10 ms, events p50 < 20 ms.
    rates    wrk (Debian's wrk 4, `-t1`, with bench/wrk_replay.lua): GET /health closed loop (2 connections a
             worker), then POST /api/v1/predict (half historical, half real time) closed loop to probe the
             capacity C, then fixed rates of 50 %, 60 % ... 300 % of C until one is not sustained (an answer not
             2xx, under 95 % of the offered rate achieved, or p99 over --max-p99-ms), then half the highest
             sustained rate for p50/p99. Aims: >= 300 req/s and >= 0.5 x /health; p50 < 10 ms and p99 < 50 ms
             at half. The historical bodies are on the even cars, the real-time ones on the odd: no real-time
             level changes a car asked about historically, so every repeated historical question may be answered
             with its stored prediction (`predictions/reuse.py`), reuse at its best. The report counts the
             predictions stored against the answers given; PREDICTION_REUSE_SECONDS=0 in the environment
             measures every answer made afresh.
    events   the rest of the stream (events and real-time predicts) at --event-rate; aim p99 < 100 ms.
    soak     the stream after that at --soak-rate for --soak-minutes, no error allowed, each worker's resident
             memory sampled from /proc: start, end and max, and the growth over the second half alone, to
             show that it stays flat.

    wrk's latency runs from a request's write to the last byte of its answer; gunicorn's sync workers close each
    connection, so every request, timed sequentially or by wrk, includes a loopback TCP connect.

Run it
    make bench                                      # = .venv/bin/python -m bench.serving (about 30 minutes)
    .venv/bin/python -m bench.serving --quick       # 200 calls each, 10 s wrk runs, a 1-minute soak
    .venv/bin/python -m bench.serving --phases latency --no-model    # the pattern-cascade fallback, labelled so
    .venv/bin/python -m bench.serving --phases rates,events --profile bench/results/profile
        # py-spy on two workers during the predict probe and the events: predict.svg / events.svg flame graphs,
        # predict.txt / events.txt the functions with the most samples (docs/performance.md)
Prints the tables and writes JSON to bench/results/serving.json. Any failed call or server traceback is
reported with the log's first error and the exit status is 1. The database is dropped unless --keep.
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.common import (
    HOST,
    POSTGRES,
    RESULTS,
    ROOT,
    SERVICE_ROOT,
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
    psql,
    server_env,
    server_start,
    server_stop,
    server_wait_healthy,
    text_table,
    write_json,
)
from core.simulation.fleet import EVENT_PATHS, Call, FleetConfig, SimBooking, Simulation, simulate
from core.simulation.world import World

LUA = ROOT / "bench" / "wrk_replay.lua"
PHASES = ("latency", "rates", "events", "soak")
WORLD = World(gap_scale=0.3)  # busy cars: a car's 10 future bookings span some 5 days
BOOKINGS_PER_CAR_DAY = 2.0  # about the simulator's rate in that world, to size the stream
CALLS_PER_BOOKING = 3.0  # created, started, ended and the odd modification, cancellation or predict
FUTURE_DAYS = 10  # simulated beyond the stream's end, for every car's next 10 bookings
FUTURE_BOOKINGS = 10
BATCH_SIZE = 10
STEP_FIRST, STEP_INCREMENT, STEP_LAST = 0.5, 0.1, 3.0  # predict steps, as fractions of the probed capacity
SUSTAINED_SHARE = 0.95

PREDICT_TARGET_MS, EVENT_TARGET_MS = 10.0, 20.0
AIM_PREDICT_RATE, AIM_HEALTH_SHARE = 300.0, 0.5
AIM_HALF_P50_MS, AIM_HALF_P99_MS, AIM_EVENTS_P99_MS = 10.0, 50.0, 100.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = parser_for(__doc__)
    add = parser.add_argument
    add("--phases", default=",".join(PHASES), help="comma-separated subset of " + ",".join(PHASES))
    add("--quick", action="store_true", help="200 calls each, 10 s wrk runs, a 1-minute soak at 20/s")
    add("--no-model", action="store_true", help="serve the pattern cascade (the fallback) instead of a champion")
    add("--workers", type=int, default=int(os.environ.get("WEB_CONCURRENCY", "3")), help="gunicorn workers")
    add("--database-url", default=POSTGRES + "batterypred_bench", help="Postgres database to (re)create and use")
    add("--keep", action="store_true", help="keep the database afterwards")
    numbers: dict[str, tuple[type, float, str]] = {
        "--seed": (int, 42, "simulator seed of the fleet and the predict bodies"),
        "--cars": (int, 50, "fleet size"),
        "--history-days": (int, 2, "days of the stream sent untimed first"),
        "--calls": (int, 2000, "sequential calls per endpoint"),
        "--warmup": (int, 10, "untimed sequential calls per endpoint first"),
        "--step-seconds": (int, 30, "length of the probes and of each predict step"),
        "--half-seconds": (int, 60, "length of the predict run at half the sustained rate"),
        "--max-p99-ms": (float, 250.0, "p99 above this means a step is not sustained"),
        "--event-rate": (float, 100.0, "calls/s of the event phase"),
        "--event-seconds": (int, 60, "length of the event phase"),
        "--soak-minutes": (float, 10.0, "length of the soak"),
        "--soak-rate": (float, 25.0, "calls/s during the soak (below the event capacity: the memory is the question)"),
        "--sample-seconds": (float, 10.0, "how often worker memory is sampled in the soak"),
        "--connections": (int, 64, "wrk connections for the fixed-rate runs"),
    }
    for flag, (kind, default, text) in numbers.items():
        add(flag, type=kind, default=default, help=f"{text} (default {default:g})")
    add("--rates", default="", help="explicit predict rates to step through, e.g. 100,200,300 (no probe)")
    add("--output", type=Path, default=RESULTS / "serving.json", help="JSON results file")
    add("--gunicorn", default="", help="more gunicorn options to try, e.g. '--worker-class gthread --threads 4'")
    add("--profile", type=Path, help="py-spy flame graphs and top frames of the predict probe and the events here")
    args = parser.parse_args(argv)
    args.phases = tuple(p.strip() for p in args.phases.split(",") if p.strip())
    if not args.phases or set(args.phases) - set(PHASES):
        parser.error(f"--phases must be a comma-separated subset of {','.join(PHASES)}")
    if args.quick:
        args.calls, args.step_seconds, args.half_seconds, args.event_seconds = 200, 10, 10, 10
        args.soak_minutes, args.soak_rate, args.sample_seconds = min(args.soak_minutes, 1.0), 20.0, 2.0
    if min(args.workers, args.calls, args.step_seconds, args.half_seconds, args.event_seconds) < 1:
        parser.error("--workers, --calls and the phase lengths must be positive")
    if args.cars < BATCH_SIZE:
        parser.error(f"--cars must be >= {BATCH_SIZE}")
    args.rates = tuple(float(r) for r in args.rates.split(",") if r.strip())
    return args


# --- the simulated fleet and the bodies sent ---------------------------------------------------------------


@dataclass
class Fleet:
    sim: Simulation
    calls: list[Call]  # the stream sent, in time order (the simulation's, up to a little before now)
    by_car: dict[str, list[SimBooking]]  # every car's bookings by scheduled start
    history_end: datetime  # the untimed history ends here
    rng: random.Random
    now: datetime = field(init=False)  # where the sequentially sent stream ended; the predicts are asked then

    @property
    def cars(self) -> list[str]:
        return list(self.by_car)

    def future(self, car: str, at: datetime, exclude: str = "") -> list[SimBooking]:
        """The car's next 10 bookings not started (nor cancelled) at `at`."""
        t = self.sim.hours(at)
        later = (b for b in self.by_car[car] if b.booking_id != exclude and b.actual_start > t)
        return [b for b in later if not (b.cancelled and b.cancelled_at <= t)][:FUTURE_BOOKINGS]

    def item(self, b: SimBooking, at: datetime) -> dict[str, str]:
        start, end = b.times_at(self.sim.hours(at))
        when = {"starts_at": iso(self.sim.when(start)), "ends_at": iso(self.sim.when(end))}
        return {"booking_id": b.booking_id, "user_id": b.renter.user_id, **when}

    def body(self, call: Call) -> dict[str, Any]:
        """The call as sent: an event carries the car's future bookings as known then."""
        if call.kind == "predict":
            return call.body
        future = self.future(call.vehicle_id, call.at, call.booking_id)
        return call.body | {"future_bookings": [self.item(b, call.at) for b in future]}


def fleet_build(config: argparse.Namespace) -> Fleet:
    """The fleet, its stream ending a little before now, long enough for every phase that runs."""
    calls = config.calls if "latency" in config.phases else 0
    calls += config.event_rate * config.event_seconds if "events" in config.phases else 0
    calls += config.soak_rate * config.soak_minutes * 60 if "soak" in config.phases else 0
    days = config.history_days + math.ceil(1.2 * calls / (config.cars * BOOKINGS_PER_CAR_DAY * CALLS_PER_BOOKING)) + 1
    epoch = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(days=days + FUTURE_DAYS)
    sim = simulate(
        FleetConfig(
            cars=config.cars,
            renters=4 * config.cars,
            days=days + FUTURE_DAYS,
            seed=config.seed,
            epoch=epoch,
            world=WORLD,
        )
    )
    calls = [c for c in sim.calls if c.at < epoch + timedelta(days=days)]
    by_car: dict[str, list[SimBooking]] = {}
    for b in sorted(sim.bookings, key=lambda b: (b.start, b.booking_id)):
        by_car.setdefault(b.car.car_id, []).append(b)
    return Fleet(sim, calls, by_car, epoch + timedelta(days=config.history_days), random.Random(config.seed))


def predict_body(fleet: Fleet, i: int, *, real_time: bool = False) -> dict[str, Any]:
    """Historical: the car's 4th-10th future booking (3-9 scheduled before it). Real time: its 3rd, the level
    now and the two bookings before it, as known now."""
    car = fleet.cars[i % len(fleet.cars)]
    future = fleet.future(car, fleet.now)
    if len(future) < 3:
        raise BenchError(f"car {car} has {len(future)} future bookings at {iso(fleet.now)}; 3 are needed")
    k = 2 if real_time else 3 + (i // len(fleet.cars)) % (FUTURE_BOOKINGS - 3)
    target = future[min(k, len(future) - 1)]
    body = {"vehicle_id": car, "user_id": target.renter.user_id, "booking_id": target.booking_id}
    body["booking_start_time"] = fleet.item(target, fleet.now)["starts_at"]  # as the platform knows it now
    if real_time:
        body["current_battery_level"] = round(fleet.rng.uniform(30, 95), 1)
        body["current_timestamp"] = iso(fleet.now + timedelta(seconds=i % 3600))
        before = [fleet.item(b, fleet.now) for b in future[:2]]  # a late return may overlap the target: left out
        body["intermediate_bookings"] = [b for b in before if b["ends_at"] <= body["booking_start_time"]]
    return body


# --- sequential latency ---------------------------------------------------------------------------------------


class CountingConnection(http.client.HTTPConnection):
    """An HTTPConnection that counts how often it had to (re)connect."""

    connects = 0

    def connect(self) -> None:
        super().connect()
        self.connects += 1


@dataclass
class Endpoint:
    name: str
    target_p50_ms: float | None = None
    timings: list[float] = field(default_factory=list)
    errors: int = 0

    def summary(self) -> dict[str, Any]:
        p50 = percentile(self.timings, 0.50)
        met = None if self.target_p50_ms is None else bool(p50 < self.target_p50_ms and self.errors == 0)
        return {
            "endpoint": self.name,
            "calls": len(self.timings),
            **{f"p{q}_ms": round(percentile(self.timings, q / 100), 2) for q in (50, 95, 99)},
            "errors": self.errors,
            "target": None if self.target_p50_ms is None else f"p50 < {self.target_p50_ms:g} ms",
            "target_met": met,
        }


class Sequential:
    """One client sending one call at a time, timing each under its endpoint and checking every answer."""

    def __init__(self, port: int, api_key: str) -> None:
        self.conn = CountingConnection(HOST, port, timeout=60)
        self.headers = {"X-API-Key": api_key, "Accept": "application/json", "Content-Type": "application/json"}
        self.endpoints: dict[str, Endpoint] = {}
        self.untimed = self.untimed_errors = 0
        self.failures: list[str] = []

    def endpoint(self, name: str, target_p50_ms: float | None = None) -> Endpoint:
        return self.endpoints.setdefault(name, Endpoint(name, target_p50_ms))

    def call(self, name: str | None, method: str, path: str, body: Any = None) -> Any:
        """Send one call; time it under `name` (None: untimed)."""
        start = time.perf_counter()
        try:
            self.conn.request(method, path, None if body is None else json.dumps(body).encode(), self.headers)
            response = self.conn.getresponse()
            status, data = response.status, response.read()
        except (OSError, http.client.HTTPException) as exc:
            self.conn.close()
            status, data = 0, f"{type(exc).__name__}: {exc}".encode()
        ms = (time.perf_counter() - start) * 1000
        try:
            payload = json.loads(data)
        except ValueError:
            payload = None
        failed = status != 200 or payload is None
        failed |= "/events/" in path and (not isinstance(payload, dict) or payload.get("status") != "success")
        if name is None:
            self.untimed, self.untimed_errors = self.untimed + 1, self.untimed_errors + failed
        else:
            self.endpoints[name].timings.append(ms)
            self.endpoints[name].errors += failed
        if failed and len(self.failures) < 10:
            sent = json.dumps(body)[:600] if body is not None else ""
            self.failures.append(f"{method} {path} {sent} -> {status} {data[:1500].decode(errors='replace')}")
        return payload

    @property
    def errors(self) -> int:
        return self.untimed_errors + sum(e.errors for e in self.endpoints.values())


def event_name(kind: str) -> str:
    return f"POST {EVENT_PATHS[kind]}"


def phase_latency(client: Sequential, fleet: Fleet, stream: list[Call], config: argparse.Namespace) -> int:
    """The stream's events timed until `--calls` created, then each predict and read endpoint; how many calls of
    the stream it sent."""
    for kind in ("created", "modified", "started", "ended", "cancelled"):
        client.endpoint(event_name(kind), EVENT_TARGET_MS)
    created = client.endpoints[event_name("created")].timings
    sent = 0
    for call in stream:
        if len(created) >= config.calls:
            break
        client.call(None if call.kind == "predict" else event_name(call.kind), "POST", call.path, fleet.body(call))
        sent += 1
    fleet.now = stream[sent - 1].at if sent else fleet.history_end
    ids, cars = [b.booking_id for car in fleet.cars for b in fleet.future(car, fleet.now)], fleet.cars
    predict, batch = "/api/v1/predict", "/api/v1/predict/batch"
    loops: list[tuple[str, float | None, Callable[[int], tuple[str, Any]]]] = [
        ("POST /api/v1/predict (historical)", PREDICT_TARGET_MS, lambda i: (predict, predict_body(fleet, i))),
        (
            "POST /api/v1/predict (real-time, 2 intermediate)",
            PREDICT_TARGET_MS,
            lambda i: (predict, predict_body(fleet, i, real_time=True)),
        ),
        (
            f"POST /api/v1/predict/batch ({BATCH_SIZE} bookings)",
            None,
            lambda i: (batch, {"bookings": [predict_body(fleet, i * BATCH_SIZE + j) for j in range(BATCH_SIZE)]}),
        ),
        ("GET /api/v1/predictions/{booking_id}", None, lambda i: (f"/api/v1/predictions/{ids[i % len(ids)]}", None)),
        (
            "GET /api/v1/vehicle/{id}/timeline",
            None,
            lambda i: (f"/api/v1/vehicle/{cars[i % len(cars)]}/timeline", None),
        ),
        ("GET /api/v1/model/info", None, lambda i: ("/api/v1/model/info", None)),
        ("GET /health", None, lambda i: ("/health", None)),
    ]
    for name, target, build in loops:
        client.endpoint(name, target)
        for i in range(config.warmup + config.calls):
            path, body = build(i)
            client.call(name if i >= config.warmup else None, "GET" if body is None else "POST", path, body)
    return sent


# --- wrk ------------------------------------------------------------------------------------------------------


@dataclass
class Run:
    """One wrk run and what it showed."""

    name: str
    offered_rate: float | None  # None: closed loop, as fast as the connections go
    seconds: int
    connections: int
    requests: int = 0
    achieved_rate: float = 0.0
    p50_ms: float = math.nan
    p90_ms: float = math.nan
    p99_ms: float = math.nan
    max_ms: float = math.nan
    errors: int = 0
    error_detail: dict[str, int] = field(default_factory=dict)
    late_sends: int = 0
    wraps: int = 0
    server_tracebacks: int = 0
    sustained: bool | None = None

    def judge(self, max_p99_ms: float) -> bool:
        """Every answer 2xx, the offered rate achieved (95 %) and no runaway queue (p99 under the bound)."""
        achieved = self.offered_rate is None or self.achieved_rate >= SUSTAINED_SHARE * self.offered_rate
        self.sustained = self.errors == 0 and self.server_tracebacks == 0 and achieved and self.p99_ms <= max_p99_ms
        return self.sustained


@dataclass
class Wrk:
    server: Server
    api_key: str
    workdir: Path
    runs: list[Run] = field(default_factory=list)

    def file(self, name: str, lines: list[tuple[str, Any]]) -> Path:
        """wrk_replay.lua's input: one `<path>\\t<json body>` per line (no body: a GET)."""
        path = self.workdir / f"{name}.tsv"
        text = "".join(f"{p}\t{'' if b is None else json.dumps(b, separators=(',', ':'))}\n" for p, b in lines)
        path.write_text(text)
        return path

    def run(self, run: Run, requests: Path, profile: Path | None = None) -> Run:
        """Run wrk once; fill `run` with its figures and the server tracebacks logged meanwhile. With `profile`,
        py-spy records two workers meanwhile: a flame graph (`<profile>.svg`) and the top frames (`<profile>.txt`)."""
        spies = self.spy(run, profile) if profile else []
        wrk = shutil.which("wrk")
        if wrk is None:
            raise BenchError("wrk is not installed: `apt-get install -y wrk` (make bench does it)")
        tracebacks = log_tracebacks(self.server.log_path)
        command = [wrk, "-t1", f"-c{run.connections}", f"-d{run.seconds}s", "--timeout", "10s", "-s", str(LUA)]
        command += [f"http://{HOST}:{self.server.port}", "--", str(requests), f"{run.offered_rate or 0:g}"]
        env = {**os.environ, "BENCH_API_KEY": self.api_key}
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        line = next((ln for ln in done.stdout.splitlines() if ln.startswith("WRK_JSON ")), None)
        if done.returncode != 0 or line is None:
            raise BenchError(f"wrk failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
        data = json.loads(line.removeprefix("WRK_JSON "))
        latency = {k: v / 1000 for k, v in data["latency_us"].items()}
        run.requests, run.achieved_rate = data["requests"], round(data["requests"] / (data["duration_us"] / 1e6), 1)
        run.p50_ms, run.p90_ms, run.p99_ms, run.max_ms = (latency[k] for k in ("p50", "p90", "p99", "max"))
        detail = {k: v for k, v in data["errors"].items() if k != "status"}
        detail |= {"4xx": data["status_4xx"], "5xx": data["status_5xx"], "other": data["status_other"]}
        run.error_detail = {k: v for k, v in detail.items() if v}
        run.errors, run.late_sends, run.wraps = sum(run.error_detail.values()), data["late_sends"], data["wraps"]
        run.server_tracebacks = log_tracebacks(self.server.log_path) - tracebacks
        for spy in spies:
            spy.wait(timeout=60)
        if profile:
            profile.with_suffix(".txt").write_text(top_frames(profile.with_suffix(".raw")))
        self.runs.append(run)
        offered = "max" if run.offered_rate is None else f"{run.offered_rate:.0f}/s"
        print(
            f"  {run.name}: offered {offered}, {run.achieved_rate:.1f}/s, p50 {run.p50_ms:.1f} ms, "
            f"p99 {run.p99_ms:.1f} ms, errors {run.errors}",
            flush=True,
        )
        time.sleep(2)  # let the listen queue drain between runs
        return run

    def spy(self, run: Run, profile: Path) -> list[subprocess.Popen[bytes]]:
        """py-spy on two workers for the run's length: one draws the flame graph, the other counts the stacks."""
        spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        pids = worker_pids(self.server.process.pid)
        if len(pids) < 2 or not Path(spy).exists():
            raise BenchError(f"--profile needs py-spy (requirements-dev.txt) and 2 workers; found {spy}, {pids}")
        profile.parent.mkdir(parents=True, exist_ok=True)
        common = ["record", "--rate", "100", "--duration", str(max(1, run.seconds - 2)), "--nonblocking"]
        outputs = (("flamegraph", ".svg"), ("raw", ".raw"))
        return [
            subprocess.Popen(
                [spy, *common, "--pid", str(pid), "--format", form, "-o", str(profile.with_suffix(suffix))],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for pid, (form, suffix) in zip(pids, outputs, strict=False)
        ]


PROJECT = ("core/", "common/", "bookings/", "learning/", "predictions/", "callbacks/", "events/", "batterypred/")
AREAS = {  # where a sample was, by the first matching frame of its stack (innermost first)
    "Postgres round trips (psycopg)": "psycopg/",
    "model (lleaves, LightGBM)": ("lleaves/", "lightgbm/"),
    "ORM (building queries, rows to objects)": "django/db/",
    "DRF (parsing, validation, rendering)": "rest_framework/",
    "numpy": "numpy/",
    "project code itself": PROJECT,
}
# psycopg's frames where a worker waits for Postgres's answer (psycopg's C wait runs no Python frame of its own, so
# py-spy shows the last Python line before it: the send).
WAITING = (
    "Connection.wait",
    "BaseCursor._send_query_prepared",
    "BaseCursor._execute_send",
    "BaseConnection._exec_command",
)
WAITING_AREA = "waiting for Postgres's answer (off the CPU)"


def top_frames(raw: Path, count: int = 20) -> str:
    """Where one worker spent its samples (py-spy's collapsed stacks): by area, and the project's functions.

    A sample whose innermost frame is psycopg waiting for Postgres's answer (`WAITING`) is the worker off the CPU:
    it is counted as such, and the functions are ranked on the other samples alone (CPU), since on a machine of
    2 cores the workers' CPU, not Postgres's, bounds the rate (docs/performance.md)."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    areas: Counter[str] = Counter()
    total = cpu = 0
    for line in raw.read_text().splitlines():
        stack, _, samples = line.rpartition(" ")
        frames = [(f.split(" (")[0], f.rsplit(" (", 1)[-1].rstrip(")").split(":")[0]) for f in stack.split(";")]
        n = int(samples)
        total += n
        if frames[-1][1].startswith("psycopg/") and frames[-1][0] in WAITING:
            areas[WAITING_AREA] += n
            continue
        cpu += n
        own[f"{frames[-1][1]}:{frames[-1][0]}"] += n
        for name, path in {f for f in frames if f[1].startswith(PROJECT)}:
            inclusive[f"{path}:{name}"] += n
        area = next((a for f in reversed(frames) for a, p in AREAS.items() if f[1].startswith(p)), "other")
        areas[area] += n

    def share(n: int, of: int) -> str:
        return f"{100 * n / max(of, 1):5.1f} %"

    rows = [f"{total} samples of one worker (100 a second), {cpu} of them on the CPU", "", "by area, of all samples:"]
    rows += [f"  {share(n, total)}  {a}" for a, n in areas.most_common()]
    rows += ["", "project functions (inclusive), of the CPU samples:"]
    rows += [f"  {share(n, cpu)}  {f}" for f, n in inclusive.most_common(count)]
    rows += ["", "self time, of the CPU samples:"] + [f"  {share(n, cpu)}  {f}" for f, n in own.most_common(count)]
    return "\n".join(rows) + "\n"


def predictions_stored(url: str) -> int:
    """How many predictions the service has stored: its answers less the reused ones (`predictions/reuse.py`)."""
    return int(psql(url, "SELECT count(*) FROM predictions_prediction", database=database_name(url)))


def phase_rates(wrk: Wrk, fleet: Fleet, config: argparse.Namespace) -> dict[str, Any]:
    closed = 2 * config.workers
    health = wrk.run(
        Run("GET /health closed loop", None, config.step_seconds, closed), wrk.file("health", [("/health", None)])
    )
    bodies = [("/api/v1/predict", predict_body(fleet, i, real_time=i % 2 == 1)) for i in range(20_000)]
    requests = wrk.file("predict", bodies)
    stored_before, runs_before = predictions_stored(config.database_url), len(wrk.runs)
    capacity, rates = None, list(config.rates)
    if not rates:
        profile = config.profile / "predict" if config.profile else None
        probe = wrk.run(Run("predict closed loop", None, config.step_seconds, closed), requests, profile)
        if probe.errors or probe.server_tracebacks:
            raise BenchError(f"the capacity probe had errors: {probe.error_detail}")
        capacity = probe.achieved_rate
        steps = round((STEP_LAST - STEP_FIRST) / STEP_INCREMENT) + 1
        rates = sorted({max(1.0, round(capacity * (STEP_FIRST + k * STEP_INCREMENT))) for k in range(steps)})
    sustained = None
    for rate in rates:
        connections = max(config.connections, math.ceil(rate * 0.25))
        if not wrk.run(Run(f"predict at {rate:.0f}/s", rate, config.step_seconds, connections), requests).judge(
            config.max_p99_ms
        ):
            break
        sustained = rate
    half_rate = max(1.0, round((sustained or capacity or rates[0]) / 2))
    half = wrk.run(
        Run(f"predict at half ({half_rate:.0f}/s)", half_rate, config.half_seconds, config.connections), requests
    )
    half.judge(config.max_p99_ms)
    share = sustained / health.achieved_rate if sustained and health.achieved_rate else None
    asked = sum(r.requests for r in wrk.runs[runs_before:])
    stored = predictions_stored(config.database_url) - stored_before
    return {
        "predict_requests": asked,
        "predictions_stored": stored,
        "reused_share": round(1 - stored / asked, 3) if asked else None,
        "health_closed_loop_rate": health.achieved_rate,
        "predict_closed_loop_rate": capacity,
        "highest_sustained_rate": sustained,
        "sustained_share_of_health": round(share, 3) if share else None,
        "half": asdict(half),
        "aims": {
            f"sustained >= {AIM_PREDICT_RATE:.0f}/s": sustained is not None and sustained >= AIM_PREDICT_RATE,
            f"sustained >= {AIM_HEALTH_SHARE} x /health": share is not None and share >= AIM_HEALTH_SHARE,
            f"half: p50 < {AIM_HALF_P50_MS:.0f} ms, p99 < {AIM_HALF_P99_MS:.0f} ms": half.errors == 0
            and half.p50_ms < AIM_HALF_P50_MS
            and half.p99_ms < AIM_HALF_P99_MS,
        },
    }


def phase_stream(wrk: Wrk, fleet: Fleet, calls: list[Call], run: Run, profile: Path | None = None) -> Run:
    """The stream's next calls at a fixed rate (the events phase and the soak)."""
    if not calls:
        raise BenchError(f"{run.name}: the simulated stream has no calls left")
    run = wrk.run(run, wrk.file(run.name.split()[0], [(c.path, fleet.body(c)) for c in calls]), profile)
    run.judge(float("inf"))
    return run


# --- worker memory ---------------------------------------------------------------------------------------------


def worker_pids(master: int) -> list[int]:
    """The gunicorn master's children (its workers), from /proc."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == master:
                pids.append(int(entry.name))
        except (OSError, IndexError, ValueError):
            continue
    return sorted(pids)


def worker_rss_kb(master: int) -> dict[str, int]:
    """Resident memory of each worker (kB)."""
    rss = {}
    for pid in worker_pids(master):
        try:
            status = Path(f"/proc/{pid}/status").read_text()
            rss[str(pid)] = int(next(ln for ln in status.splitlines() if ln.startswith("VmRSS:")).split()[1])
        except (OSError, StopIteration, IndexError, ValueError):
            continue
    return rss


def memory_sampled(master: int, interval: float, during: Any) -> tuple[Any, dict[str, Any]]:
    """Run `during()` while sampling the workers' memory every `interval` seconds; its result and the report."""
    samples: list[dict[str, int]] = []
    stop = threading.Event()

    def sample() -> None:
        samples.append(worker_rss_kb(master))
        while not stop.wait(interval):
            samples.append(worker_rss_kb(master))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        result = during()
    finally:
        stop.set()
        sampler.join()
    samples.append(worker_rss_kb(master))
    totals = [sum(s.values()) / 1024 for s in samples]
    per_worker = {
        pid: [round(s[pid] / 1024, 1) for s in samples if pid in s] for pid in sorted(set().union(*samples), key=int)
    }
    return result, {
        "samples": len(samples),
        "workers_restarted": set(samples[0]) != set(samples[-1]),
        "per_worker_start_end_max_mb": {pid: (mb[0], mb[-1], max(mb)) for pid, mb in per_worker.items()},
        "total_start_mb": round(totals[0], 1),
        "total_end_mb": round(totals[-1], 1),
        "total_max_mb": round(max(totals), 1),
        "total_growth_pct": round(100 * (totals[-1] - totals[0]) / totals[0], 1) if totals[0] else None,
        # Whether it levels off: the growth over the soak's second half alone, and every sample's total.
        "second_half_growth_pct": round(100 * (totals[-1] - totals[len(totals) // 2]) / totals[len(totals) // 2], 1),
        "total_mb_by_sample": [round(t, 1) for t in totals],
    }


# --- the run ---------------------------------------------------------------------------------------------------


def serve(
    config: argparse.Namespace, workdir: Path, *, database_url: str | None = None, root: Path = SERVICE_ROOT
) -> tuple[Server, str, dict[str, Any]]:
    """Migrate, create a key, train and promote the champion (unless --no-model) and start gunicorn as shipped.

    The service of the tree `root` on `database_url` (by default --database-url), its files under `workdir`."""
    metrics = workdir / "prometheus-multiproc"
    metrics.mkdir(parents=True)
    env = server_env(
        database_url or config.database_url, MODEL_DIR=str(workdir / "models"), PROMETHEUS_MULTIPROC_DIR=str(metrics)
    )
    manage(env, "migrate", "--noinput", "-v0", root=root)
    api_key = api_key_create(env, root=root)
    if not config.no_model:
        started = time.monotonic()
        manage(env, "train_model", "--synthetic", "--seed", "1001", root=root)
        print(f"bootstrap champion trained and promoted in {time.monotonic() - started:.0f} s", flush=True)
    shipped = ("--access-logfile", "-", "--timeout", "30", "--backlog", "2048")
    server = server_start(env, config.workers, (*shipped, *config.gunicorn.split()), root=root)
    server_wait_healthy(server, timeout=60)
    conn = http.client.HTTPConnection(HOST, server.port, timeout=60)
    conn.request("GET", "/api/v1/model/info", headers={"X-API-Key": api_key})
    info = json.loads(conn.getresponse().read())
    conn.close()
    serving = {"serving": info.get("serving"), "model_version": info.get("model_version")}
    if config.no_model == (serving["serving"] == "model"):
        raise BenchError(f"asked for {'no ' if config.no_model else ''}model, served {serving}")
    print(f"gunicorn ({config.workers} workers) on {HOST}:{server.port} serving {serving}", flush=True)
    return server, api_key, serving


def history_send(client: Sequential, fleet: Fleet) -> int:
    """Send the stream's calls before `fleet.history_end`, untimed; how many."""
    history = [c for c in fleet.calls if c.at < fleet.history_end]
    started = time.monotonic()
    for call in history:
        client.call(None, "POST", call.path, fleet.body(call))
    cars = len(fleet.cars)
    print(f"{cars} cars: {len(history)} calls of history sent in {time.monotonic() - started:.0f} s", flush=True)
    if client.untimed_errors:
        raise BenchError(f"sending the history failed ({client.untimed_errors} errors): {client.failures[:2]}")
    return len(history)


def run(config: argparse.Namespace, workdir: Path, payload: dict[str, Any], live: dict[str, Any]) -> None:
    """Every phase asked for, in order; the server, the client and wrk's runs are left in `live`."""
    fleet = fleet_build(config)
    server, api_key, payload["served"] = serve(config, workdir)
    live["server"] = server
    client = live["client"] = Sequential(server.port, api_key)
    wrk = live["wrk"] = Wrk(server, api_key, workdir)
    stream = fleet.calls[history_send(client, fleet) :]
    fleet.now, results = fleet.history_end, payload["results"]
    if "latency" in config.phases:
        print(f"latency: {config.calls} sequential calls each ...", flush=True)
        stream = stream[phase_latency(client, fleet, stream, config) :]
        results["latency"] = [e.summary() for e in client.endpoints.values()]
    if "rates" in config.phases:
        print("rates (wrk) ...", flush=True)
        results["rates"] = phase_rates(wrk, fleet, config)
    if "events" in config.phases:
        chunk = stream[: int(config.event_rate * config.event_seconds * 1.1) + 50]
        print(f"events: the stream at {config.event_rate:g}/s ...", flush=True)
        events = Run("events mix", config.event_rate, config.event_seconds, config.connections)
        phase_stream(wrk, fleet, chunk, events, config.profile / "events" if config.profile else None)
        results["events"] = {
            "run": asdict(events),
            "mix": dict(Counter(c.kind for c in chunk[: events.requests])),
            "p99_aim_met": events.errors == 0 and events.p99_ms < AIM_EVENTS_P99_MS,
        }
        stream = stream[min(events.requests, len(chunk)) :]
    if "soak" in config.phases:
        print(f"soak: {config.soak_minutes:g} min at {config.soak_rate:g}/s ...", flush=True)
        seconds = max(1, round(config.soak_minutes * 60))
        soak = Run(f"soak {config.soak_minutes:g} min", config.soak_rate, seconds, config.connections)
        _, memory = memory_sampled(
            server.process.pid, max(config.sample_seconds, 0.5), lambda: phase_stream(wrk, fleet, stream, soak)
        )
        results["soak"] = {"run": asdict(soak), "memory": memory}


def report(payload: dict[str, Any], client: Sequential, wrk: Wrk) -> None:
    machine, results = payload["machine"], payload["results"]
    print(
        f"\nmachine: {machine['cpu_count']} CPUs, load {machine['load_average']}, Postgres {machine.get('postgres')}, "
        f"{payload['config']['workers']} gunicorn workers, {machine['date']}; served: {payload['served']}"
    )
    if rows := results.get("latency"):
        cells = [["endpoint (sequential)", "calls", "p50 ms", "p95 ms", "p99 ms", "errors", "target"]]
        for r in rows:
            target = "" if r["target"] is None else f"{r['target']} ({'met' if r['target_met'] else 'MISSED'})"
            cells.append([r["endpoint"], str(r["calls"]), *(f"{r[k]:.2f}" for k in ("p50_ms", "p95_ms", "p99_ms"))])
            cells[-1] += [str(r["errors"]), target]
        print(text_table(cells, left=(0, 6)))
        print(f"{client.conn.connects} TCP connections (gunicorn's sync workers close after each response)\n")
    if wrk.runs:
        cells = [["run (wrk)", "offered/s", "achieved/s", "requests", "p50 ms", "p90 ms", "p99 ms", "errors", ""]]
        for r in wrk.runs:
            verdict = "" if r.sustained is None else ("ok" if r.sustained else "NOT sustained")
            figures = (f"{v:.1f}" for v in (r.p50_ms, r.p90_ms, r.p99_ms))
            offered = "max" if r.offered_rate is None else f"{r.offered_rate:.0f}"
            cells.append([r.name, offered, f"{r.achieved_rate:.1f}", str(r.requests), *figures, str(r.errors), verdict])
        print(text_table(cells, left=(0, 8)))
    if rates := results.get("rates"):
        print(
            f"predict: sustained {rates['highest_sustained_rate']}/s, {rates['sustained_share_of_health']} x /health "
            f"({rates['health_closed_loop_rate']}/s); aims: {rates['aims']}\n"
            f"predict: {rates['predictions_stored']} predictions stored for {rates['predict_requests']} answers, "
            f"{rates['reused_share']:.1%} answered with a stored one (PREDICTION_REUSE_SECONDS; give or take 2 %: "
            "the requests in flight when wrk stops are stored but not counted)"
        )
    if events := results.get("events"):
        print(f"events: mix {events['mix']}; p99 < {AIM_EVENTS_P99_MS:.0f} ms: {events['p99_aim_met']}")
    if soak := results.get("soak"):
        m = soak["memory"]
        print(
            f"soak: workers' RSS {m['total_start_mb']} -> {m['total_end_mb']} MB (second half "
            f"{m['second_half_growth_pct']:+.1f} %, max {m['total_max_mb']}, "
            f"{m['total_growth_pct']} %), restarted: {m['workers_restarted']}; {m['per_worker_start_end_max_mb']}"
        )


def main(argv: list[str] | None = None) -> int:
    config = parse_args(argv)
    if {"rates", "events", "soak"} & set(config.phases) and shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: `apt-get install -y wrk` (make bench does it)")
    payload: dict[str, Any] = {"machine": machine_info(), "config": vars(config) | {"phases": config.phases}}
    payload["results"] = {}
    live: dict[str, Any] = {}
    created = ok = False
    with tempfile.TemporaryDirectory(prefix="batterypred-serving-") as tmp:
        try:
            payload["machine"]["postgres"] = database_create(config.database_url)
            created = True
            run(config, Path(tmp), payload, live)
            server, client, wrk = live["server"], live["client"], live["wrk"]
            server_stop(server)
            tracebacks = log_tracebacks(server.log_path)
            payload["runs"], payload["server_log_tracebacks"] = [asdict(r) for r in wrk.runs], tracebacks
            payload["failures"] = client.failures
            write_json(config.output, payload)
            report(payload, client, wrk)
            print(f"\nresults written to {config.output}")
            errors = client.errors + sum(r.errors for r in wrk.runs)
            ok = errors == 0 and tracebacks == 0
            if not ok:
                print(f"\n{errors} failed calls, {tracebacks} tracebacks in the server log", file=sys.stderr)
                for failure in client.failures:
                    print(f"FAILED {failure}", file=sys.stderr)
                print(f"first error in the log:\n{log_first_error(server.log_path)}", file=sys.stderr)
        except BenchError as exc:
            print(f"\nbenchmark failed: {exc}", file=sys.stderr)
            if "server" in live:
                print(
                    f"\n--- tail of {live['server'].log_path} ---\n{log_tail(live['server'].log_path)}", file=sys.stderr
                )
        finally:
            if "server" in live:
                server_stop(live["server"])
                if ok:
                    live["server"].log_path.unlink(missing_ok=True)
            if created and not config.keep:
                database_drop(config.database_url)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
