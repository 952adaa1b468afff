"""Load benchmark: throughput and tail latency of batterypred under concurrent load (gunicorn + Postgres + wrk).

bench.endpoints times one request at a time; this script asks how much traffic the service takes and what the
tail looks like under it. It is a benchmark, not a test: run it on a quiet machine and read the figures.

What it measures
    (a) predict: the highest sustained rate of `POST /api/v1/predict` (half historical mode, half real-time mode
        with 0-2 intermediate bookings, over the seeded fleet). A closed-loop probe (2 connections per worker, as
        fast as they go) estimates the capacity C; then fixed rates of 50 %, 60 %, 70 % ... of C are offered in
        turn until one is not sustained (at most 300 % of C). A rate is *sustained* when every answer is 2xx, the
        achieved rate is at least 95 % of the offered one and p99 stays under --max-p99-ms (beyond that a queue is
        building). Then p50/p99 are measured at half the highest sustained rate. Aims: >= 300 req/s sustained;
        p99 < 50 ms at half of it.
    (b) events: the booking lifecycle mix (created, started, ended, modified, cancelled and real-time predicts) at
        --event-rate (default 100 calls/s) with p99. Aim: p99 < 100 ms.
    (c) soak: the same mix at --soak-rate for --soak-minutes, with no error allowed, while the resident memory of
        every gunicorn worker is sampled from /proc; start, end and max are reported to show that it is flat.

Where the traffic comes from
    `manage.py simulate_fleet --cars N --renters M --days D --seed S --out DIR` writes DIR/calls.jsonl, one
    `{"at", "path", "body"}` per line in time order; this script sizes the fleet for the phases it runs, seeds the
    database with the first --seed-days of calls (sent in order per car) and replays the rest at a fixed rate.

How the load is made
    wrk (Debian's `apt-get install -y wrk`, run as `wrk -t1`) with bench/wrk_replay.lua, which replays the
    requests in file order and, for a fixed rate, hands out send slots of a global schedule through wrk's delay()
    hook (Debian ships wrk 4, which has no fixed-rate option of its own). Latency is wrk's, from the moment a
    request is written to the last byte of the answer; gunicorn's sync workers close every connection, so each
    request includes a loopback TCP connect. One wrk thread uses little CPU next to the service.

Set-up
    Drops and creates a dedicated Postgres database (default `batterypred_bench_load`, so that it never collides
    with bench.endpoints'), migrates it, creates an API key and starts `gunicorn batterypred.wsgi` with
    --workers (default WEB_CONCURRENCY or 3, what `make run` and the Docker image start; gunicorn's own rule of
    thumb, 2 x CPUs + 1 = 5 here, was about 10 % slower in closed-loop runs on this 2-core machine, where the workers
    share the cores with Postgres and wrk) on a free port with DJANGO_DEBUG=0, a random secret key, LOG_LEVEL=WARNING
    and API_RATE_LIMIT=1000000/min. Every phase fails the run if the server log shows a traceback. Prints a table
    and writes JSON to bench/results/load.json (ignored by git); stops gunicorn and drops the database unless
    --keep.

Run it
    make bench-load                                   # the full run, with a 10-minute soak (about 20 minutes)
    .venv/bin/python -m bench.load --quick            # smoke: 10 s phases, 1-minute soak
    .venv/bin/python -m bench.load --phases predict --step-seconds 30 --workers 5
    .venv/bin/python -m bench.load --phases events,soak --event-rate 150 --soak-minutes 30 --soak-rate 80
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
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from bench.common import (
    HOST,
    POSTGRES,
    RESULTS,
    ROOT,
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
    server_env,
    server_start,
    server_stop,
    server_wait_healthy,
    text_table,
    write_json,
)

LUA = ROOT / "bench" / "wrk_replay.lua"
DEFAULT_DATABASE_URL = POSTGRES + "batterypred_bench_load"
PHASES = ("predict", "events", "soak")

PREDICT_PATH = "/api/v1/predict"
EVENTS = "/api/v1/events/"
CALLS_PER_CAR_DAY = 4.0  # a conservative guess at the simulator's density, to size the fleet
STEP_FIRST, STEP_INCREMENT, STEP_LAST = 0.5, 0.1, 3.0  # predict steps, as fractions of the probed capacity
SUSTAINED_SHARE = 0.95

AIM_PREDICT_RATE = 300.0
AIM_PREDICT_HALF_P99_MS = 50.0
AIM_EVENTS_P99_MS = 100.0


# --- configuration -----------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = parser_for(__doc__)
    add = parser.add_argument
    add("--phases", default=",".join(PHASES), help="comma-separated subset of predict,events,soak")
    add("--quick", action="store_true", help="smoke run: 10 s phases, 1-minute soak at 20/s")
    add(
        "--workers",
        type=int,
        default=int(os.environ.get("WEB_CONCURRENCY", "3")),
        help="gunicorn workers (default WEB_CONCURRENCY or 3, as scripts/serve.sh)",
    )
    add("--database-url", default=DEFAULT_DATABASE_URL, help="Postgres database to (re)create and use")
    add("--keep", action="store_true", help="keep the database afterwards")
    add("--seed", type=int, default=42, help="seed of the simulated fleet and the predict bodies")
    add("--cars", type=int, default=100, help="fleet size (default 100)")
    add("--renters", type=int, default=300, help="renters in the simulated fleet (default 300)")
    add("--seed-days", type=int, default=2, help="days of the simulation sent (in order, untimed) before the phases")
    add("--step-seconds", type=int, default=30, help="length of the capacity probe and of each predict step")
    add("--half-seconds", type=int, default=60, help="length of the predict run at half the sustained rate")
    add("--rates", default="", help="explicit predict rates to step through, e.g. 100,200,300 (skips the probe)")
    add("--max-p99-ms", type=float, default=250.0, help="p99 above this means a step is not sustained")
    add("--realtime-share", type=float, default=0.5, help="share of real-time predicts in phase (a)")
    add("--event-rate", type=float, default=100.0, help="calls/s of the event mix in phase (b)")
    add("--event-seconds", type=int, default=60, help="length of phase (b)")
    add("--soak-minutes", type=float, default=10.0, help="length of phase (c)")
    add("--soak-rate", type=float, default=50.0, help="calls/s of the event mix during the soak")
    add("--sample-seconds", type=float, default=10.0, help="how often worker memory is sampled in the soak")
    add("--connections", type=int, default=64, help="wrk connections for the fixed-rate runs")
    add("--calls-file", type=Path, help="replay this calls.jsonl instead of simulating a fleet")
    add("--output", type=Path, default=RESULTS / "load.json", help="JSON results file")
    args = parser.parse_args(argv)
    phases = tuple(p.strip() for p in args.phases.split(",") if p.strip())
    if not phases or set(phases) - set(PHASES):
        parser.error(f"--phases must be a comma-separated subset of {','.join(PHASES)}")
    if args.quick:
        args.step_seconds, args.half_seconds, args.event_seconds = 10, 10, 10
        args.soak_minutes, args.soak_rate, args.sample_seconds = min(args.soak_minutes, 1.0), 20.0, 2.0
    if args.workers < 1 or args.cars < 1 or min(args.step_seconds, args.half_seconds, args.event_seconds) < 1:
        parser.error("--workers, --cars and the phase lengths must be positive")
    args.phases, args.rates = phases, tuple(float(r) for r in args.rates.split(",") if r.strip())
    args.seed_days, args.realtime_share = max(args.seed_days, 1), min(max(args.realtime_share, 0.0), 1.0)
    args.sample_seconds, args.connections = max(args.sample_seconds, 0.5), max(args.connections, 1)
    return args


# --- the calls ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    at: datetime
    path: str
    body: dict[str, Any]

    @property
    def vehicle_id(self) -> str:
        return str(self.body.get("vehicle_id", ""))


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def calls_load(path: Path) -> list[Call]:
    """Read a calls.jsonl: one `{"at": ISO time, "path": "/api/v1/...", "body": {...}}` per line, in time order."""
    calls = []
    with path.open() as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                calls.append(Call(parse_time(row["at"]), row["path"], row["body"]))
            except (ValueError, KeyError, TypeError) as exc:
                raise BenchError(f"{path}:{number}: not a call ({exc})") from None
    calls.sort(key=lambda c: c.at)  # stable: calls at the same instant keep the file's order
    return calls


def calls_simulate(env: dict[str, str], config: argparse.Namespace, days: int, out: Path) -> list[Call]:
    """Run the fleet simulator (`manage.py simulate_fleet`) into `out` and read its call stream."""
    args = ["simulate_fleet", "--cars", str(config.cars), "--renters", str(config.renters)]
    args += ["--days", str(days), "--seed", str(config.seed), "--out", str(out)]
    manage(env, *args)
    return calls_load(out / "calls.jsonl")


def calls_needed(config: argparse.Namespace) -> int:
    """How many replayed calls phases (b) and (c) use, with a margin."""
    needed = 0
    if "events" in config.phases:
        needed += config.event_rate * config.event_seconds
    if "soak" in config.phases:
        needed += config.soak_rate * config.soak_minutes * 60
    return int(needed * 1.15) + 100


def calls_prepare(env: dict[str, str], config: argparse.Namespace, workdir: Path) -> tuple[list[Call], str]:
    if config.calls_file:
        return calls_load(config.calls_file), f"file {config.calls_file}"
    needed = calls_needed(config)
    days = config.seed_days + math.ceil(needed / (config.cars * CALLS_PER_CAR_DAY))
    calls = calls_simulate(env, config, days, workdir / "sim")
    _, stream = calls_split(calls, config.seed_days)
    if len(stream) < needed:
        # The simulator is sparser than guessed: simulate once more for as long as its density needs.
        per_day = max(len(stream), 1) / (days - config.seed_days)
        days = config.seed_days + math.ceil(1.1 * needed / per_day)
        calls = calls_simulate(env, config, days, workdir / "sim")
    return calls, f"manage.py simulate_fleet --cars {config.cars} --renters {config.renters} --days {days}"


def calls_split(calls: list[Call], seed_days: int) -> tuple[list[Call], list[Call]]:
    """The first `seed_days` of simulated time (sent before the phases) and the rest (replayed under load)."""
    if not calls:
        raise BenchError("no calls to replay")
    cutoff = calls[0].at + timedelta(days=seed_days)
    seed = [c for c in calls if c.at < cutoff]
    return seed, calls[len(seed) :]


def requests_file(calls: list[Call], path: Path) -> Path:
    """wrk_replay.lua's input: one `<path>\\t<json body>` per line."""
    with path.open("w") as fh:
        for call in calls:
            fh.write(f"{call.path}\t{json.dumps(call.body, separators=(',', ':'))}\n")
    return path


# --- seeding ---------------------------------------------------------------------------------------------


def seed_send(port: int, api_key: str, calls: list[Call], threads: int = 4) -> dict[str, int]:
    """Send `calls` in order per car (cars spread over a few client threads); count the answers by status."""
    lanes: list[list[Call]] = [[] for _ in range(threads)]
    for call in calls:
        lanes[hash(call.vehicle_id) % threads].append(call)
    counts: Counter[str] = Counter()
    lock = threading.Lock()
    samples: list[str] = []

    def run(lane: list[Call]) -> None:
        headers = {"X-API-Key": api_key, "Content-Type": "application/json", "Accept": "application/json"}
        for call in lane:
            conn = http.client.HTTPConnection(HOST, port, timeout=60)
            try:
                conn.request("POST", call.path, body=json.dumps(call.body).encode(), headers=headers)
                response = conn.getresponse()
                body = response.read()
                key = str(response.status)
            except (OSError, http.client.HTTPException) as exc:
                key, body = "socket error", str(exc).encode()
            finally:
                conn.close()
            with lock:
                counts[key] += 1
                if key != "200" and len(samples) < 3:
                    samples.append(f"{key} {call.path} {json.dumps(call.body)[:300]} -> {body[:300]!r}")

    workers = [threading.Thread(target=run, args=(lane,)) for lane in lanes]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    for sample in samples:
        print(f"  seed call failed: {sample}", file=sys.stderr)
    return dict(counts)


# --- predict bodies -----------------------------------------------------------------------------------------


def predict_bodies(seed_calls: list[Call], count: int, realtime_share: float, rng: random.Random) -> list[Call]:
    """Predictions for the seeded cars, for bookings 2-48 h after the seeded history; fresh booking ids."""
    vehicles = sorted({c.vehicle_id for c in seed_calls if c.vehicle_id})
    users = sorted({str(c.body["user_id"]) for c in seed_calls if c.body.get("user_id")}) or ["R0"]
    if not vehicles:
        raise BenchError("the seeded calls name no vehicle")
    now = seed_calls[-1].at
    bodies = []
    for i in range(count):
        start = now + timedelta(hours=rng.uniform(2.0, 48.0))
        body: dict[str, Any] = {
            "vehicle_id": vehicles[i % len(vehicles)],
            "user_id": rng.choice(users),
            "booking_id": f"LOAD-{i}",
            "booking_start_time": iso(start),
        }
        if rng.random() < realtime_share:
            gap = (start - now) / 3
            trips = [
                {"starts_at": iso(now + gap * (k + 0.2)), "ends_at": iso(now + gap * (k + 0.8))}
                for k in range(rng.randrange(3))
            ]
            body |= {
                "current_battery_level": round(rng.uniform(20.0, 95.0), 1),
                "current_timestamp": iso(now),
                "intermediate_bookings": trips,
            }
        bodies.append(Call(now, PREDICT_PATH, body))
    return bodies


# --- gunicorn and its memory --------------------------------------------------------------------------------


def worker_pids(master: int) -> list[int]:
    """The gunicorn master's children (its workers), from /proc."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name may contain spaces and parentheses: the fields after the last ")" are fixed.
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == master:
            pids.append(int(entry.name))
    return sorted(pids)


def rss_kb(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


class MemorySampler(threading.Thread):
    """Samples every worker's RSS every `interval` seconds until stopped."""

    def __init__(self, master: int, interval: float) -> None:
        super().__init__(daemon=True)
        self.master, self.interval = master, interval
        self.samples: list[dict[str, Any]] = []
        self._stop_event = threading.Event()
        self._started_at = time.monotonic()

    def sample(self) -> None:
        workers = {pid: rss_kb(pid) for pid in worker_pids(self.master)}
        workers = {pid: kb for pid, kb in workers.items() if kb is not None}
        elapsed = round(time.monotonic() - self._started_at, 1)
        self.samples.append({"t": elapsed, "rss_kb": {str(pid): kb for pid, kb in workers.items()}})

    def run(self) -> None:
        self.sample()
        while not self._stop_event.wait(self.interval):
            self.sample()

    def stop(self) -> None:
        self._stop_event.set()
        self.join()
        self.sample()

    def report(self) -> dict[str, Any]:
        """Start, end and max RSS per worker and for all workers together (MB), and whether any worker changed."""
        if not self.samples:
            return {}
        first, last = self.samples[0]["rss_kb"], self.samples[-1]["rss_kb"]
        pids = sorted(set(first) | set(last), key=int)
        per_worker = {}
        for pid in pids:
            series = [s["rss_kb"][pid] for s in self.samples if pid in s["rss_kb"]]
            per_worker[pid] = {
                "start_mb": round(series[0] / 1024, 1),
                "end_mb": round(series[-1] / 1024, 1),
                "max_mb": round(max(series) / 1024, 1),
            }
        totals = [sum(s["rss_kb"].values()) for s in self.samples]
        return {
            "samples": len(self.samples),
            "interval_s": self.interval,
            "workers_restarted": set(first) != set(last),
            "per_worker": per_worker,
            "total_start_mb": round(totals[0] / 1024, 1),
            "total_end_mb": round(totals[-1] / 1024, 1),
            "total_max_mb": round(max(totals) / 1024, 1),
            "total_growth_pct": round(100 * (totals[-1] - totals[0]) / totals[0], 1) if totals[0] else None,
            "series": self.samples,
        }


# --- wrk -------------------------------------------------------------------------------------------------------


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
    p99_9_ms: float = math.nan
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


def wrk_path() -> str:
    path = shutil.which("wrk")
    if path is None:
        raise BenchError("wrk is not installed: `apt-get install -y wrk` (make bench-load does it)")
    return path


def wrk_run(run: Run, port: int, api_key: str, requests: Path, server: Server) -> Run:
    """Run wrk once; fill `run` with its figures (and the server tracebacks logged meanwhile)."""
    tracebacks_before = log_tracebacks(server.log_path)
    rate = 0 if run.offered_rate is None else run.offered_rate
    command = [wrk_path(), "-t1", f"-c{run.connections}", f"-d{run.seconds}s", "--timeout", "10s"]
    command += ["-s", str(LUA), f"http://{HOST}:{port}", "--", str(requests), f"{rate:g}"]
    done = subprocess.run(
        command, env={**os.environ, "BENCH_API_KEY": api_key}, capture_output=True, text=True, check=False
    )
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("WRK_JSON ")), None)
    if done.returncode != 0 or line is None:
        raise BenchError(f"wrk failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    data = json.loads(line.removeprefix("WRK_JSON "))
    latency = data["latency_us"]
    socket_errors = {k: v for k, v in data["errors"].items() if k != "status" and v}
    run.requests = data["requests"]
    run.achieved_rate = round(data["requests"] / (data["duration_us"] / 1e6), 1)
    run.p50_ms, run.p90_ms = latency["p50"] / 1000, latency["p90"] / 1000
    run.p99_ms, run.p99_9_ms, run.max_ms = latency["p99"] / 1000, latency["p99_9"] / 1000, latency["max"] / 1000
    run.error_detail = {**socket_errors, "4xx": data["status_4xx"], "5xx": data["status_5xx"]}
    run.error_detail = {k: v for k, v in run.error_detail.items() if v}
    run.errors = sum(run.error_detail.values()) + data["status_other"]
    run.late_sends, run.wraps = data["late_sends"], data["wraps"]
    run.server_tracebacks = log_tracebacks(server.log_path) - tracebacks_before
    return run


def run_line(run: Run) -> str:
    offered = "max" if run.offered_rate is None else f"{run.offered_rate:.0f}/s"
    verdict = "" if run.sustained is None else (" sustained" if run.sustained else " NOT sustained")
    notes = [f"errors {run.error_detail}"] if run.errors else []
    if run.late_sends:
        notes.append(f"{run.late_sends} sends >10 ms late (no free connection)")
    if run.wraps:
        notes.append(f"the requests file wrapped {run.wraps}x (later calls were replays)")
    return (
        f"  {run.name}: offered {offered}, achieved {run.achieved_rate:.1f}/s, p50 {run.p50_ms:.1f} ms, "
        f"p99 {run.p99_ms:.1f} ms, errors {run.errors}{verdict}" + "".join(f"; {n}" for n in notes)
    )


# --- phases ---------------------------------------------------------------------------------------------------


@dataclass
class Context:
    config: argparse.Namespace
    server: Server
    api_key: str
    workdir: Path
    runs: list[Run] = field(default_factory=list)

    def wrk(self, run: Run, requests: Path) -> Run:
        wrk_run(run, self.server.port, self.api_key, requests, self.server)
        self.runs.append(run)
        print(run_line(run), flush=True)
        time.sleep(2)  # let the listen queue drain between runs
        return run


def phase_predict(ctx: Context, seed_calls: list[Call]) -> dict[str, Any]:
    config = ctx.config
    rng = random.Random(config.seed)
    requests = requests_file(
        predict_bodies(seed_calls, 20_000, config.realtime_share, rng), ctx.workdir / "predict.tsv"
    )
    capacity = None
    rates = list(config.rates)
    if not rates:
        probe = ctx.wrk(Run("predict capacity probe", None, config.step_seconds, 2 * config.workers), requests)
        if probe.errors or probe.server_tracebacks:
            raise BenchError(f"the capacity probe had errors: {probe.error_detail}")
        capacity = probe.achieved_rate
        steps = round((STEP_LAST - STEP_FIRST) / STEP_INCREMENT) + 1
        rates = sorted({max(1.0, round(capacity * (STEP_FIRST + k * STEP_INCREMENT))) for k in range(steps)})
    best: Run | None = None
    for rate in rates:
        connections = max(config.connections, math.ceil(rate * 0.25))
        step = ctx.wrk(Run(f"predict at {rate:.0f}/s", rate, config.step_seconds, connections), requests)
        if not step.judge(config.max_p99_ms):
            break
        best = step
    sustained = best.offered_rate if best else None
    half_rate = max(1.0, round((sustained or (capacity or rates[0])) / 2))
    half = ctx.wrk(
        Run(f"predict at half ({half_rate:.0f}/s)", half_rate, config.half_seconds, config.connections), requests
    )
    half.judge(config.max_p99_ms)
    return {
        "capacity_probe_rate": capacity,
        "steps": [asdict(r) for r in ctx.runs if r.name.startswith("predict at ") and "half" not in r.name],
        "highest_sustained_rate": sustained,
        "half": asdict(half),
        "aims": {
            "sustained_rate_at_least": AIM_PREDICT_RATE,
            "sustained_rate_met": sustained is not None and sustained >= AIM_PREDICT_RATE,
            "half_p99_ms_below": AIM_PREDICT_HALF_P99_MS,
            "half_p99_met": half.errors == 0 and half.p99_ms < AIM_PREDICT_HALF_P99_MS,
        },
    }


def phase_events(ctx: Context, stream: list[Call]) -> tuple[dict[str, Any], int]:
    config = ctx.config
    wanted = int(config.event_rate * config.event_seconds * 1.15) + 50
    chunk = stream[:wanted]
    requests = requests_file(chunk, ctx.workdir / "events.tsv")
    run = ctx.wrk(Run("event mix", config.event_rate, config.event_seconds, config.connections), requests)
    run.judge(float("inf"))
    kinds = Counter(c.path.rsplit("/", 1)[-1] for c in chunk[: run.requests])
    result = {
        "run": asdict(run),
        "mix": dict(kinds),
        "aims": {"p99_ms_below": AIM_EVENTS_P99_MS, "met": run.errors == 0 and run.p99_ms < AIM_EVENTS_P99_MS},
    }
    return result, min(run.requests, len(chunk))


def phase_soak(ctx: Context, stream: list[Call]) -> dict[str, Any]:
    config = ctx.config
    seconds = max(1, round(config.soak_minutes * 60))
    requests = requests_file(stream or [], ctx.workdir / "soak.tsv")
    sampler = MemorySampler(ctx.server.process.pid, config.sample_seconds)
    sampler.start()
    try:
        run = ctx.wrk(Run(f"soak {config.soak_minutes:g} min", config.soak_rate, seconds, config.connections), requests)
    finally:
        sampler.stop()
    run.judge(float("inf"))
    memory = sampler.report()
    return {"run": asdict(run), "memory": memory, "no_errors": run.errors == 0 and run.server_tracebacks == 0}


# --- report ------------------------------------------------------------------------------------------------------


def table(runs: list[Run]) -> str:
    rows = [["run", "offered/s", "achieved/s", "requests", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "errors", ""]]
    for r in runs:
        figures = (r.p50_ms, r.p90_ms, r.p99_ms, r.p99_9_ms)
        offered = "max" if r.offered_rate is None else f"{r.offered_rate:.0f}"
        verdict = "" if r.sustained is None else ("ok" if r.sustained else "NOT sustained")
        rows.append([r.name, offered, f"{r.achieved_rate:.1f}", str(r.requests), *(f"{v:.1f}" for v in figures)])
        rows[-1] += [str(r.errors), verdict]
    return text_table(rows, left=(0, 9))


def summary_lines(results: dict[str, Any]) -> list[str]:
    lines = []
    if predict := results.get("predict"):
        aims = predict["aims"]
        half = predict["half"]
        lines.append(
            f"predict: highest sustained {predict['highest_sustained_rate']} req/s "
            f"(aim >= {AIM_PREDICT_RATE:.0f}: {'met' if aims['sustained_rate_met'] else 'MISSED'}); at half "
            f"({half['offered_rate']:.0f}/s) p50 {half['p50_ms']:.1f} ms, p99 {half['p99_ms']:.1f} ms "
            f"(aim < {AIM_PREDICT_HALF_P99_MS:.0f} ms: {'met' if aims['half_p99_met'] else 'MISSED'})"
        )
    if events := results.get("events"):
        run = events["run"]
        lines.append(
            f"events: {run['achieved_rate']:.1f}/s, p50 {run['p50_ms']:.1f} ms, p99 {run['p99_ms']:.1f} ms, "
            f"errors {run['errors']} (aim p99 < {AIM_EVENTS_P99_MS:.0f} ms: "
            f"{'met' if events['aims']['met'] else 'MISSED'}); mix {events['mix']}"
        )
    if soak := results.get("soak"):
        memory = soak["memory"]
        lines.append(
            f"soak: {soak['run']['requests']} calls, errors {soak['run']['errors']}, "
            f"p99 {soak['run']['p99_ms']:.1f} ms; "
            f"workers' RSS start {memory.get('total_start_mb')} MB, end {memory.get('total_end_mb')} MB, "
            f"max {memory.get('total_max_mb')} MB ({memory.get('total_growth_pct')} %), "
            f"restarted: {memory.get('workers_restarted')}"
        )
        for pid, figures in memory.get("per_worker", {}).items():
            lines.append(f"  worker {pid}: {figures['start_mb']} -> {figures['end_mb']} MB (max {figures['max_mb']})")
    return lines


# --- main -----------------------------------------------------------------------------------------------------------


def run_all(config: argparse.Namespace, env: dict[str, str], workdir: Path, payload: dict[str, Any]) -> Context:
    manage(env, "migrate", "--noinput", "-v0")
    calls, source = calls_prepare(env, config, workdir)
    seed_calls, stream = calls_split(calls, config.seed_days)
    payload["calls"] = {"source": source, "total": len(calls), "seeded": len(seed_calls), "replayable": len(stream)}
    print(f"calls: {source}: {len(calls)} ({len(seed_calls)} seeded, {len(stream)} to replay)", flush=True)
    if len(stream) < calls_needed(config):
        print(f"  note: fewer calls than the phases need ({calls_needed(config)}); wrk wraps around", flush=True)

    api_key = api_key_create(env)
    server = server_start(env, config.workers, ("--timeout", "30", "--backlog", "2048"))
    ctx = Context(config, server, api_key, workdir)
    server_wait_healthy(server)
    print(f"gunicorn ({config.workers} workers) on {HOST}:{server.port}, log {server.log_path}", flush=True)

    started = time.monotonic()
    seeded = seed_send(server.port, api_key, seed_calls)
    payload["calls"]["seed_answers"] = seeded
    print(f"seeded {len(seed_calls)} calls in {time.monotonic() - started:.1f} s: {seeded}", flush=True)
    if set(seeded) != {"200"}:
        raise BenchError(f"seeding failed: {seeded}")

    results = payload["results"]
    if "predict" in config.phases:
        print("(a) predict ...", flush=True)
        results["predict"] = phase_predict(ctx, seed_calls)
    offset = 0
    if "events" in config.phases:
        print(f"(b) event mix at {config.event_rate:g}/s ...", flush=True)
        results["events"], offset = phase_events(ctx, stream)
    if "soak" in config.phases:
        print(f"(c) soak {config.soak_minutes:g} min at {config.soak_rate:g}/s ...", flush=True)
        results["soak"] = phase_soak(ctx, stream[offset:] or stream)
    return ctx


def main(argv: list[str] | None = None) -> int:
    config = parse_args(argv)
    wrk_path()
    machine = machine_info()
    payload: dict[str, Any] = {"machine": machine, "config": vars(config), "results": {}}
    ctx: Context | None = None
    created = ok = False
    with tempfile.TemporaryDirectory(prefix="batterypred-load-") as tmp:
        try:
            database_name(config.database_url)
            machine["postgres"] = database_create(config.database_url)
            created = True
            env = server_env(config.database_url)
            ctx = run_all(config, env, Path(tmp), payload)
            server_stop(ctx.server)
            tracebacks = log_tracebacks(ctx.server.log_path)
            payload["runs"] = [asdict(r) for r in ctx.runs]
            payload["server_log_tracebacks"] = tracebacks
            write_json(config.output, payload)
            print(
                f"\nmachine: {machine['cpu_count']} CPUs, load average {machine['load_average']}, "
                f"Postgres {machine['postgres']}, {config.workers} gunicorn workers, {machine['date']}"
            )
            print(table(ctx.runs))
            print()
            for line in summary_lines(payload["results"]):
                print(line)
            print(f"\nresults written to {config.output}")
            errors = sum(r.errors for r in ctx.runs)
            ok = errors == 0 and tracebacks == 0
            if tracebacks:
                print(f"\n{tracebacks} tracebacks in the server log:\n{log_first_error(ctx.server.log_path)}")
        except BenchError as exc:
            print(f"\nbenchmark failed: {exc}", file=sys.stderr)
            if ctx is not None:
                print(f"\n--- tail of {ctx.server.log_path} ---\n{log_tail(ctx.server.log_path)}", file=sys.stderr)
        except KeyboardInterrupt:
            print("\ninterrupted", file=sys.stderr)
        finally:
            if ctx is not None:
                server_stop(ctx.server)
                if ok:
                    ctx.server.log_path.unlink(missing_ok=True)
            if created and not config.keep:
                database_drop(config.database_url)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
