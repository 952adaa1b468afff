"""Before and after in one run: two services side by side, measured in alternation, so that the machine's noise
moves both alike.

Why: on a shared machine the closed-loop rate of `GET /health` moved by 1.3x between two runs of `bench.serving`
twenty minutes apart (docs/performance.md), so a before run and an after run, one after the other, cannot tell a
20 % cut from the weather. Here both services are up at once, each on its own Postgres database with the same
history, and every measurement is taken of one then the other, in alternating order, round after round. A
figure is reported as each side's median over the rounds, and the change as the median of the rounds' ratios
(after / before), which compares runs seconds apart.

What serves
    Each side as `bench.serving` serves it: its own tree's code (the before side a `git worktree` of --before
    using this tree's virtualenv, so both run the same dependencies), the bootstrap champion trained and
    compiled by that side's own code (`train_model --synthetic --seed 1001`), gunicorn with --workers and the
    options of scripts/serve.sh, DJANGO_DEBUG=0 and no rate limit. The report names what served on each side.

Each round, for each side (the order alternates)
    health     GET /health closed loop (2 connections a worker)
    predict    POST /api/v1/predict closed loop (half historical, half real time: bench.serving's bodies)
    fixed      the same bodies at --rate a second: p50 and p99 (the fleet's own pace, not the machine's limit)
    events     the next --event-rate x --seconds calls of the simulated stream (every event carries the car's next
               10 bookings), the same calls to both sides, at --event-rate: p50 and p99
    Around every run, the CPU time (user and system, from /proc) of the side's gunicorn workers and of Postgres,
    per request answered: what a call costs the machine, the figure that sizes a deployment.

After the rounds
    paired     the next --paired calls of the stream, one at a time, each sent to both sides back to back (which
               side first alternates): each side's p50 per kind of event, and the median of the calls' own ratios
               (after / before). The two answers of a call are milliseconds apart, so the machine's weather, which
               moves whole runs by a fifth here, mostly cancels; this is the figure for an event's latency.

Run it
    .venv/bin/python -m bench.ab --before 3dc9c5e             # this tree against commit 3dc9c5e (about 15 minutes)
    .venv/bin/python -m bench.ab --before HEAD~3 --rounds 3 --seconds 5
    .venv/bin/python -m bench.ab --before HEAD                # A/A: the same code on both sides
    Run the A/A too and read a change's ratios beside it: two sides of the same code differed here by up to 13 % in
    the workers' CPU a predict, the same side ahead in every round (docs/performance.md), so a ratio no further
    from 1 than the A/A's is no evidence.
Prints the table and writes JSON to bench/results/ab.json; exit status 1 on any failed call or server traceback.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.common import (
    POSTGRES,
    RESULTS,
    ROOT,
    BenchError,
    Server,
    database_create,
    database_drop,
    log_tracebacks,
    machine_info,
    parser_for,
    server_stop,
    text_table,
    write_json,
)
from bench.serving import (
    Fleet,
    Run,
    Sequential,
    Wrk,
    event_name,
    fleet_build,
    history_send,
    predict_body,
    serve,
    worker_pids,
)
from core.simulation.fleet import Call

MEASURES = ("health", "predict", "fixed", "events")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = parser_for(__doc__)
    add = parser.add_argument
    add("--before", required=True, help="the git revision measured as 'before' (this tree is 'after')")
    add("--rounds", type=int, default=5, help="measurement rounds (default 5)")
    add("--seconds", type=int, default=10, help="length of each wrk run (default 10)")
    add("--rate", type=float, default=100.0, help="fixed predict rate a second (default 100)")
    add("--event-rate", type=float, default=15.0, help="events a second (default 15, under both sides' capacity)")
    add("--workers", type=int, default=3, help="gunicorn workers per side (default 3)")
    add("--cars", type=int, default=50, help="fleet size (default 50)")
    add("--seed", type=int, default=42, help="simulator seed of the fleet and the bodies (default 42)")
    add("--history-days", type=int, default=2, help="days of the stream sent untimed first (default 2)")
    add("--connections", type=int, default=64, help="wrk connections of the fixed-rate runs (default 64)")
    add("--paired", type=int, default=400, help="stream calls sent to both sides back to back at the end (default 400)")
    add("--output", type=Path, default=RESULTS / "ab.json", help="JSON results file")
    config = parser.parse_args(argv)
    if min(config.rounds, config.seconds, config.workers) < 1 or min(config.rate, config.event_rate) <= 0:
        parser.error("--rounds, --seconds, --workers, --rate and --event-rate must be positive")
    if config.paired < 0:
        parser.error("--paired must be 0 or more")
    # What bench.serving's fleet needs to know to simulate a stream long enough for every round's events and the
    # paired calls.
    config.phases, config.calls = ("events",), 0
    config.event_seconds = config.rounds * config.seconds + math.ceil(config.paired / config.event_rate)
    config.soak_rate = config.soak_minutes = 0
    config.no_model, config.gunicorn = False, ""  # what bench.serving's `serve` asks: the champion, as shipped
    return config


@dataclass
class Side:
    name: str
    root: Path
    database_url: str
    server: Server | None = None
    api_key: str = ""
    served: dict[str, Any] = field(default_factory=dict)
    wrk: Wrk | None = None
    client: Sequential | None = None
    runs: dict[str, list[Run]] = field(default_factory=lambda: {m: [] for m in MEASURES})


def worktree_add(revision: str, where: Path) -> Path:
    """A detached worktree of `revision` that runs with this tree's virtualenv."""
    subprocess.run(["git", "worktree", "add", "--detach", "-q", str(where), revision], cwd=ROOT, check=True)
    (where / ".venv").symlink_to(ROOT / ".venv")
    return where


def worktree_remove(where: Path) -> None:
    subprocess.run(["git", "worktree", "remove", "--force", str(where)], cwd=ROOT, check=False)
    subprocess.run(["git", "worktree", "prune"], cwd=ROOT, check=False)


def side_start(side: Side, config: argparse.Namespace, fleet: Fleet, workdir: Path) -> None:
    """The side's service as `bench.serving` serves it (its own champion, trained by its own code), with the
    history sent."""
    started = time.monotonic()
    database_create(side.database_url)
    side.server, side.api_key, side.served = serve(
        config, workdir / side.name, database_url=side.database_url, root=side.root
    )
    side.client = Sequential(side.server.port, side.api_key)
    history_send(side.client, fleet)
    side.wrk = Wrk(side.server, side.api_key, workdir / side.name)
    print(f"{side.name}: {side.root} ready in {time.monotonic() - started:.0f} s", flush=True)


def cpu_seconds(pids: list[int]) -> dict[int, float]:
    """Each process's user and system CPU time so far (from /proc; a process gone meanwhile is left out)."""
    used = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        used[pid] = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return used


def cpu_used(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds used between two readings by the processes alive at both (one that ended took its time along)."""
    return sum(after[pid] - before[pid] for pid in before.keys() & after.keys())


def postgres_pids() -> list[int]:
    """Every Postgres server process: only the side being measured talks to it meanwhile."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and (entry / "comm").read_text().startswith("postgres"):
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def measured(side: Side, run: Run, requests: Path) -> Run:
    """One wrk run of `side`, with the CPU its workers and Postgres spent on it, per request answered: what a call
    costs the machine, whatever rate the run reached (docs/performance.md sizes deployments with it)."""
    assert side.wrk is not None and side.server is not None
    workers, database = worker_pids(side.server.process.pid), postgres_pids()
    before = cpu_seconds(workers), cpu_seconds(database)
    side.wrk.run(run, requests)
    used = cpu_used(before[0], cpu_seconds(workers)), cpu_used(before[1], cpu_seconds(database))
    if run.requests:
        run.cpu_ms_per_request = round(1000 * sum(used) / run.requests, 2)  # type: ignore[attr-defined]
        run.worker_cpu_ms_per_request = round(1000 * used[0] / run.requests, 2)  # type: ignore[attr-defined]
    return run


def cpu_of(run: Run) -> dict[str, float]:
    return {k: getattr(run, k) for k in ("cpu_ms_per_request", "worker_cpu_ms_per_request") if hasattr(run, k)}


def round_run(side: Side, config: argparse.Namespace, files: dict[str, Path], events: Path) -> None:
    closed = 2 * config.workers
    runs = side.runs
    runs["health"].append(measured(side, Run(f"{side.name} health", None, config.seconds, closed), files["health"]))
    runs["predict"].append(measured(side, Run(f"{side.name} predict", None, config.seconds, closed), files["predict"]))
    fixed = Run(f"{side.name} predict at {config.rate:g}/s", config.rate, config.seconds, config.connections)
    runs["fixed"].append(measured(side, fixed, files["predict"]))
    stream = Run(f"{side.name} events at {config.event_rate:g}/s", config.event_rate, config.seconds, 16)
    runs["events"].append(measured(side, stream, events))


FIGURES = (  # (label, measure, Run attribute)
    ("GET /health closed loop, req/s", "health", "achieved_rate"),
    ("predict closed loop, req/s", "predict", "achieved_rate"),
    ("predict closed loop / /health", "predict", "share"),
    ("predict closed loop p50 ms", "predict", "p50_ms"),
    ("predict, CPU ms a request (workers + Postgres)", "fixed", "cpu_ms_per_request"),
    ("predict, workers' CPU ms a request", "fixed", "worker_cpu_ms_per_request"),
    ("predict at the fixed rate, achieved req/s", "fixed", "achieved_rate"),
    ("predict at the fixed rate, p50 ms", "fixed", "p50_ms"),
    ("predict at the fixed rate, p99 ms", "fixed", "p99_ms"),
    ("events at the fixed rate, achieved req/s", "events", "achieved_rate"),
    ("events at the fixed rate, p50 ms", "events", "p50_ms"),
    ("events at the fixed rate, p99 ms", "events", "p99_ms"),
    ("event, CPU ms a request (workers + Postgres)", "events", "cpu_ms_per_request"),
    ("event, workers' CPU ms a request", "events", "worker_cpu_ms_per_request"),
    ("GET /health, CPU ms a request (workers + Postgres)", "health", "cpu_ms_per_request"),
)


def figures(side: Side, measure: str, attribute: str) -> list[float]:
    if attribute == "share":
        return [
            p.achieved_rate / h.achieved_rate for p, h in zip(side.runs["predict"], side.runs["health"], strict=True)
        ]
    return [getattr(r, attribute, math.nan) for r in side.runs[measure]]


def report(before: Side, after: Side) -> list[dict[str, Any]]:
    rows, table = (
        [],
        [["figure", f"before ({before.served.get('model_version', '?')[:12]})", "after", "after / before"]],
    )
    for label, measure, attribute in FIGURES:
        b, a = figures(before, measure, attribute), figures(after, measure, attribute)
        ratio = statistics.median(x / y for x, y in zip(a, b, strict=True) if y)
        row = {"figure": label, "before": statistics.median(b), "after": statistics.median(a), "ratio": ratio}
        rows.append(row | {"before_rounds": b, "after_rounds": a})
        digits = 3 if attribute == "share" else 2 if "cpu" in attribute else 1
        table.append([label, f"{row['before']:.{digits}f}", f"{row['after']:.{digits}f}", f"{ratio:.2f}"])
    print("\nmedians over the rounds; the ratio is the median of the rounds' after / before\n")
    print(text_table(table))
    return rows


def paired_run(sides: tuple[Side, Side], fleet: Fleet, calls: list[Call]) -> None:
    """Send each call to both sides back to back, the first side alternating, each timed under its kind."""
    for i, call in enumerate(calls):
        name = "predict (the stream's)" if call.kind == "predict" else event_name(call.kind)
        for side in sides if i % 2 == 0 else sides[::-1]:
            assert side.client is not None
            side.client.endpoint(name)
            side.client.call(name, "POST", call.path, fleet.body(call))


def paired_report(before: Side, after: Side) -> list[dict[str, Any]]:
    """Per kind: each side's p50 and the median of the calls' own after / before ratios."""
    assert before.client is not None and after.client is not None
    rows, table = [], [["paired calls", "calls", "before p50 ms", "after p50 ms", "median of the calls' ratios"]]
    kinds = list(before.client.endpoints)
    pairs = {
        k: list(zip(before.client.endpoints[k].timings, after.client.endpoints[k].timings, strict=True)) for k in kinds
    }
    events = [p for k in kinds if k.startswith("POST /api/v1/events/") for p in pairs[k]]
    for kind, timed in [*pairs.items(), ("every event", events)]:
        if not timed:
            continue
        b, a = [x for x, _ in timed], [y for _, y in timed]
        row = {
            "kind": kind,
            "calls": len(timed),
            "before_p50_ms": statistics.median(b),
            "after_p50_ms": statistics.median(a),
            "ratio": statistics.median(y / x for x, y in timed if x),
        }
        rows.append(row)
        table.append(
            [
                kind,
                str(row["calls"]),
                f"{row['before_p50_ms']:.2f}",
                f"{row['after_p50_ms']:.2f}",
                f"{row['ratio']:.2f}",
            ]
        )
    print("\neach call sent to both sides back to back (the first side alternating)\n")
    print(text_table(table))
    return rows


def main(argv: list[str] | None = None) -> int:
    config = parse_args(argv)
    fleet = fleet_build(config)
    stream = [c for c in fleet.calls if c.at >= fleet.history_end]
    per_round = round(config.event_rate * config.seconds)
    needed = per_round * config.rounds + config.paired
    if len(stream) < needed:
        raise BenchError(f"the stream has {len(stream)} calls after the history; {needed} needed")
    fleet.now = fleet.history_end
    payload: dict[str, Any] = {"machine": machine_info(), "config": vars(config) | {"output": str(config.output)}}
    ok = False
    with tempfile.TemporaryDirectory(prefix="batterypred-ab-") as tmp:
        workdir = Path(tmp)
        before = Side(
            "before", worktree_add(config.before, workdir / "before-tree"), POSTGRES + "batterypred_ab_before"
        )
        after = Side("after", ROOT, POSTGRES + "batterypred_ab_after")
        sides = (before, after)
        try:
            for side in sides:
                side_start(side, config, fleet, workdir)
            files: dict[str, Path] = {}
            for r in range(config.rounds):
                chunk = stream[r * per_round : (r + 1) * per_round]
                print(f"round {r + 1} of {config.rounds}", flush=True)
                for side in sides if r % 2 == 0 else sides[::-1]:
                    assert side.wrk is not None
                    files = files or {
                        "health": side.wrk.file("health", [("/health", None)]),
                        "predict": side.wrk.file(
                            "predict",
                            [("/api/v1/predict", predict_body(fleet, i, real_time=i % 2 == 1)) for i in range(20_000)],
                        ),
                    }
                    events = side.wrk.file(f"events-{r}", [(c.path, fleet.body(c)) for c in chunk])
                    round_run(side, config, files, events)
            first = per_round * config.rounds
            if config.paired:
                print(f"paired: {config.paired} calls", flush=True)
                paired_run(sides, fleet, stream[first : first + config.paired])
            payload["figures"] = report(before, after)
            payload["paired"] = paired_report(before, after) if config.paired else []
            payload["sides"] = {
                s.name: {
                    "tree": str(s.root),
                    "served": s.served,
                    "runs": {m: [asdict(r) | cpu_of(r) for r in rs] for m, rs in s.runs.items()},
                }
                for s in sides
            }
            errors = sum(r.errors for s in sides for rs in s.runs.values() for r in rs)
            errors += sum(s.client.errors for s in sides if s.client is not None)
            tracebacks = sum(log_tracebacks(s.server.log_path) for s in sides if s.server)
            payload["errors"], payload["server_log_tracebacks"] = errors, tracebacks
            write_json(config.output, payload)
            print(f"\nresults written to {config.output}")
            ok = errors == 0 and tracebacks == 0
            if not ok:
                print(f"\n{errors} failed calls, {tracebacks} tracebacks in the servers' logs", file=sys.stderr)
        except BenchError as exc:
            print(f"\nbenchmark failed: {exc}", file=sys.stderr)
        finally:
            for side in sides:
                if side.server is not None:
                    server_stop(side.server)
                database_drop(side.database_url)
            worktree_remove(before.root)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
