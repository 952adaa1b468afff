"""Training and inference speed of the gap and trip models.

    .venv/bin/python -m bench.training            # 100 k and 1 M outcomes, cascade of 50 bookings
    .venv/bin/python -m bench.training --quick    # 20 k outcomes only

- Training: `core.gbm.train` (every quantile booster of both segment kinds, plus interval
  calibration) on the feature rows of N outcomes, with the gap rows from the levels the fleet
  reported between bookings. 100 k outcomes are simulated
  (`core.simulation`, seed 2024); the 1 M set repeats those 100 k ten times with car and
  renter ids renamed per copy (training cost depends on the row count, not on the rows being
  new; the simulator would need ~20 minutes to draw 1 M fresh ones). Feature replay is timed
  separately.
- Compiling: the 100 k model's boosters compiled to machine code (`core.compiled`), which
  promotion does once per model before it serves.
- Inference: one cascade of 50 bookings priced by the model (pattern walk, feature rows, one
  batch call per booster, Monte Carlo composition), no database; median of repeated runs, with
  the compiled boosters (as served) and with LightGBM's own predictor.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pandas as pd

from bench.common import RESULTS, parser_for, write_json
from core import gbm, ml_cascade
from core.compiled import attach_compiled, compile_boosters
from core.features import GAP_FEATURES, TRIP_FEATURES, FeatureBook, replay
from core.physics import Rates, State, Trip, walk
from core.simulation.fleet import FleetConfig, simulate


def outcomes(n: int, seed: int = 2024) -> tuple[list, list]:
    """N simulated outcomes, and the levels the fleet's calls reported up to the last of them."""
    cars = max(10, n // 240)  # about 245 outcomes per car over 240 days: at least n in all
    sim = simulate(FleetConfig(cars=cars, renters=max(40, cars * 3), days=240, seed=seed))
    items = sim.outcomes()[:n]
    return items, [r for r in sim.readings() if r.at <= items[-1].end]


def frames(items: list, readings: list) -> tuple[pd.DataFrame, pd.DataFrame, float]:
    t0 = time.perf_counter()
    gaps, trips, _ = replay(items, readings)
    seconds = time.perf_counter() - t0
    return (
        pd.DataFrame(gaps, columns=[*GAP_FEATURES, "target", "at"]),
        pd.DataFrame(trips, columns=[*TRIP_FEATURES, "target", "at"]),
        seconds,
    )


def tiled(items: list, readings: list, copies: int) -> tuple[list, list]:
    out, read = [], []
    for k in range(copies):
        out += [replace(o, vehicle_id=f"{o.vehicle_id}-{k}", user_id=f"{o.user_id}-{k}") for o in items]
        read += [replace(r, vehicle_id=f"{r.vehicle_id}-{k}") for r in readings]
    return out, read


def time_training(label: str, items: list, readings: list) -> dict:
    gaps, trips, replay_s = frames(items, readings)
    result = gbm.train(f"bench-{label}", gaps, trips)
    figures = {
        "outcomes": len(items),
        "gap_rows": len(gaps),
        "trip_rows": len(trips),
        "replay_seconds": round(replay_s, 1),
        "train_seconds": round(result.seconds, 1),
        "holdout": result.metrics,
    }
    print(f"{label}: {figures}")
    return figures | {"_model": result.model}


def time_compile(model: gbm.GapTripModel, directory: Path) -> dict:
    seconds = compile_boosters(model, "bench", directory)
    assert attach_compiled(model, "bench", directory)
    print(f"compiled {len(model.gap.boosters) + len(model.trip.boosters)} boosters in {seconds:.1f} s")
    return {"boosters": len(model.gap.boosters) + len(model.trip.boosters), "seconds": round(seconds, 1)}


def time_cascade(model: gbm.GapTripModel, history: list, runs: int = 200, label: str = "") -> dict:
    book = FeatureBook()
    for o in sorted(history, key=lambda o: o.end)[-2000:]:
        book.observe(o)
    car_id = history[-1].vehicle_id
    users = list(book.renters)[:50]
    start = history[-1].end
    rates = Rates(0.1, 0.1, 12.0, 4.0, 8.0, 4.0, 0.4)
    trips, targets = [], []
    for i in range(50):
        s = start + timedelta(hours=6 + 8 * i)
        trips.append(Trip(f"B{i}", s, s + timedelta(hours=3), 8.0, 4.0, 0.4, user_id=users[i % len(users)]))
        targets.append((f"B{i}", s))
    state = State(level=70.0, at=start, charging=False)
    timings = []
    for _ in range(runs):
        t0 = time.perf_counter()
        trace: list = []
        checkpoints = walk(state, trips, targets, rates, trace=trace)
        points = ml_cascade.compose(model, trace, car_id=car_id, book=book, fleet_plug=0.4, start_std=0.0)
        ml_cascade.apply(points, checkpoints)
        timings.append((time.perf_counter() - t0) * 1000)
    figures = {
        "bookings": 50,
        "runs": runs,
        "median_ms": round(statistics.median(timings), 2),
        "p90_ms": round(sorted(timings)[int(0.9 * runs)], 2),
    }
    print(f"cascade of 50 bookings{label}: {figures}")
    return figures


def main() -> None:
    parser = parser_for(__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    result = {"cpu_count": os.cpu_count(), "train_threads": gbm.TRAIN_THREADS}
    t0 = time.perf_counter()
    base, readings = outcomes(20_000 if args.quick else 100_000)
    result["simulate_seconds"] = round(time.perf_counter() - t0, 1)
    print(f"simulated {len(base)} outcomes and {len(readings)} readings in {result['simulate_seconds']} s")
    small = time_training("20k" if args.quick else "100k", base, readings)
    result["train_small"] = {k: v for k, v in small.items() if k != "_model"}
    if not args.quick:
        big = time_training("1M", *tiled(base, readings, 10))
        result["train_1m"] = {k: v for k, v in big.items() if k != "_model"}
    model = small["_model"]
    result["cascade_lightgbm"] = time_cascade(model, base, label=" (LightGBM's predictor)")
    with tempfile.TemporaryDirectory() as directory:
        result["compile"] = time_compile(model, Path(directory))
        result["cascade"] = time_cascade(model, base, label=" (compiled, as served)")
    path = write_json(RESULTS / ("training-quick.json" if args.quick else "training.json"), result)
    print(f"JSON: {path}")


if __name__ == "__main__":
    main()
