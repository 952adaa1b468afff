"""How the accuracy benches score a replay: a simulated fleet sent to the service as Laravel would send it.

`replay` sends every call of the stream in time order over HTTP with an API key and keeps two moments per
booking: the prediction at creation (the booking-created response) and the latest prediction before pick-up
(the last event response that carried the booking in `affected_bookings`, i.e. what Laravel would show).
The same moments are priced for persistence, the seed's EMA cascade and the oracle, each from exactly what
Laravel knew at that call (`core.simulation.baselines`). `score` scores the bookings picked up after the
warm-up, by horizon and with 95 % coverage. `bench.worlds` runs it on the default world and on the world-shift
suite (`make bench-accuracy` is the default world alone, at 40 cars and 60 days).

Every booking-created asks for a level drawn per booking from REQUIRED_RANGE (`required_battery`), and
`readiness_scores` judges the service's `readiness` (issue 16): the Brier score against that of the fleet's
share of ready pick-ups, the expected calibration error over 10 bins, the share short of their need among the
bookings flagged at risk and among the others, and whether plugging the car in at its `plug_in_by` would have
made it ready (counterfactually, with the simulator's own charging from the car's true level then).
"""

from __future__ import annotations

import sys
import time
import zlib
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from bench.common import Service
from core.simulation import world
from core.simulation.baselines import KnownFleet, Snapshot, oracle, persistence, seed_ema
from core.simulation.fleet import Simulation

METHODS = ("service", "persistence", "seed_ema", "oracle")
MOMENTS = ("creation", "latest")
HORIZONS = (("<6h", 0, 6), ("6-24h", 6, 24), (">24h", 24, 1e9))
REQUIRED_RANGE = (20.0, 60.0)  # the level each replayed booking needs at pick-up, drawn per booking


def required_for(booking_id: str) -> float:
    """The `required_battery` a replayed booking-created sends: uniform in REQUIRED_RANGE, fixed per booking."""
    low, high = REQUIRED_RANGE
    return round(low + (high - low) * zlib.crc32(f"need:{booking_id}".encode()) / 2**32, 1)


@dataclass
class Scored:
    """One method's prediction of one booking at one moment."""

    level: float
    lower: float | None
    upper: float | None
    horizon_hours: float
    ready: dict | None = None  # the service's `readiness` object


def _service_items(kind: str, body: dict, response: dict) -> list[tuple[str, Scored]]:
    """(booking_id, what the service said, horizon not yet known) for every booking the response predicted."""
    items = []
    if kind == "created" and response.get("predicted_battery") is not None:
        items.append((body["booking_id"], response))
    items += [(a["booking_id"], a) for a in response.get("affected_bookings") or []]
    return [
        (bid, Scored(a["predicted_battery"], ci.get("lower"), ci.get("upper"), 0.0, a.get("readiness")))
        for bid, a in items
        for ci in [a.get("confidence_interval") or {}]
    ]


def replay(
    sim: Simulation,
    service: Service,
    *,
    progress_every: int = 1000,
    with_oracle: bool = True,
    pause: tuple[datetime, Callable[[], None]] | None = None,
) -> tuple[dict, dict, dict]:
    """Send the stream; return creation and latest predictions per method, and call statistics.

    `with_oracle=False` skips the oracle's Monte Carlo (the slow part of scoring), for a replay whose
    baselines are taken from another replay of the same stream. `pause` (a moment and a function) calls
    the function once, before the first call at or after that moment (e.g. a retrain after the warm-up).
    """
    known = KnownFleet()
    creation: dict[str, dict[str, Scored]] = defaultdict(dict)
    latest: dict[str, tuple[datetime, dict[str, Scored], Snapshot]] = {}
    creation_snap: dict[str, Snapshot] = {}
    pickups = {b.booking_id: sim.when(b.actual_start) for b in sim.bookings if not b.cancelled}
    stats = {"calls": 0, "errors": 0, "seconds": 0.0, "by_status": defaultdict(int)}
    started = time.perf_counter()
    for i, call in enumerate(sim.calls):
        if pause is not None and call.at >= pause[0]:
            pause[1]()
            pause = None
        known.observe(call.kind, call.body)
        body = call.body | {"required_battery": required_for(call.booking_id)} if call.kind == "created" else call.body
        t0 = time.perf_counter()
        status, response = service.post(call.path, body)
        stats["seconds"] += time.perf_counter() - t0
        stats["calls"] += 1
        stats["by_status"][str(status)] += 1
        if status >= 400:
            stats["errors"] += 1
            if stats["errors"] <= 5:
                print(f"  {call.kind} {call.booking_id}: {status} {response}", file=sys.stderr)
            continue
        if call.kind == "predict":
            continue
        for booking_id, said in _service_items(call.kind, call.body, response):
            pickup = pickups.get(booking_id)
            if pickup is None or call.at >= pickup:
                continue
            target_start = _target_start(known, call.vehicle_id, booking_id, pickup)
            snap = known.snapshot(call.vehicle_id, booking_id, target_start)
            horizon = (pickup - call.at).total_seconds() / 3600
            said.horizon_hours = horizon
            scored = {"service": said}
            for name, fn in (("persistence", persistence), ("seed_ema", seed_ema)):
                e = fn(snap)
                scored[name] = Scored(e.level, e.lower, e.upper, horizon)
            if call.kind == "created" and booking_id == call.booking_id:
                creation[booking_id] = scored
                creation_snap[booking_id] = snap
            latest[booking_id] = (call.at, scored, snap)
        if progress_every and (i + 1) % progress_every == 0:
            rate = (i + 1) / (time.perf_counter() - started)
            print(f"  {i + 1}/{len(sim.calls)} calls, {rate:.0f}/s", file=sys.stderr)
    for booking_id, snap in creation_snap.items() if with_oracle else ():
        e = oracle(sim, snap, seed=zlib.crc32(booking_id.encode()))
        creation[booking_id]["oracle"] = Scored(
            e.level, e.lower, e.upper, creation[booking_id]["service"].horizon_hours
        )
    latest_scored = {}
    for booking_id, (_, scored, snap) in latest.items():
        if with_oracle:
            e = oracle(sim, snap, seed=zlib.crc32(booking_id.encode()) + 1)
            scored["oracle"] = Scored(e.level, e.lower, e.upper, scored["service"].horizon_hours)
        latest_scored[booking_id] = scored
    return dict(creation), latest_scored, stats


def _target_start(known: KnownFleet, vehicle_id: str, booking_id: str, pickup: datetime) -> datetime:
    planned = known.car(vehicle_id).schedule.get(booking_id)
    return planned.start if planned else pickup


def metrics(pairs: list[tuple[Scored, float]]) -> dict:
    if not pairs:
        return {"n": 0}
    pred = np.array([p.level for p, _ in pairs])
    actual = np.array([a for _, a in pairs])
    err = pred - actual
    out = {
        "n": len(pairs),
        "mae": float(np.mean(np.abs(err))),
        "rmse": float(np.sqrt(np.mean(err**2))),
        "bias": float(np.mean(err)),
        "within_5": float(np.mean(np.abs(err) <= 5)),
        "within_10": float(np.mean(np.abs(err) <= 10)),
        "within_15": float(np.mean(np.abs(err) <= 15)),
    }
    with_interval = [(p, a) for p, a in pairs if p.lower is not None and p.upper is not None]
    if with_interval:
        out["coverage_95"] = float(np.mean([p.lower - 1e-9 <= a <= p.upper + 1e-9 for p, a in with_interval]))
        out["width_95"] = float(np.mean([p.upper - p.lower for p, _ in with_interval]))
    for label, low, high in HORIZONS:
        sel = [abs(p.level - a) for p, a in pairs if low <= p.horizon_hours < high]
        out[f"mae_{label}"] = float(np.mean(sel)) if sel else None
        out[f"n_{label}"] = len(sel)
    return out


def score(
    sim: Simulation, creation: dict, latest: dict, warmup_days: float, methods: tuple[str, ...] = METHODS
) -> dict:
    warm = warmup_days * 24
    truth = {
        b.booking_id: b.battery_at_start
        for b in sim.bookings
        if not b.cancelled and warm <= b.actual_start < sim.config.hours
    }
    result = {}
    for moment, table in (("creation", creation), ("latest", latest)):
        result[moment] = {
            method: metrics([(s[method], truth[bid]) for bid, s in table.items() if bid in truth and method in s])
            for method in methods
        }
    result["readiness"] = {
        moment: readiness_scores(sim, table, truth, deadlines=moment == "latest")
        for moment, table in (("creation", creation), ("latest", latest))
    }
    result["scored_bookings"] = len(truth)
    result["_truth"] = truth
    return result


def ece(p: np.ndarray, ready: np.ndarray, bins: int = 10) -> float:
    """The expected calibration error: per tenth of probability, |mean probability - share ready|, weighted."""
    which = np.minimum((p * bins).astype(int), bins - 1)
    gaps = [abs(p[which == k].mean() - ready[which == k].mean()) * (which == k).sum() for k in set(which)]
    return float(sum(gaps)) / len(p)


def ece_of_calibrated(p: np.ndarray, draws: int = 2000, seed: int = 0) -> tuple[float, float]:
    """The ECE a perfectly calibrated forecaster would show with these same probabilities: (median, 95th percentile).

    Why: the ECE of a finite sample is never 0. With a few hundred pick-ups spread over ten bins, a bin holds 10
    to 20 of them and its share ready wanders by 0.1 around a true probability of one half, so an honest
    forecaster's ECE has a floor that depends on n and on where its probabilities fall (Broecker and Smith 2007,
    "Increasing the reliability of reliability diagrams", draw the same consistency bars). Outcomes are drawn as
    Bernoulli(p) for each forecast, `draws` times.
    """
    rng = np.random.default_rng(seed)
    values = [ece(p, rng.random(len(p)) < p) for _ in range(draws)]
    return float(np.median(values)), float(np.quantile(values, 0.95))


def readiness_scores(sim: Simulation, table: dict, truth: dict, *, deadlines: bool) -> dict:
    """How honest the service's `probability_ready` was at one moment, and (`deadlines`) its `plug_in_by`."""
    said = [(s["service"].ready, truth[bid], bid) for bid, s in table.items() if bid in truth and s["service"].ready]
    if not said:
        return {"n": 0}
    p = np.array([r["probability_ready"] for r, _, _ in said])
    ready = np.array([actual >= r["required_level"] for r, actual, _ in said])
    flagged = np.array([bool(r["at_risk"]) for r, _, _ in said])
    bins = np.minimum((p * 10).astype(int), 9)
    reliability = [(k, int((bins == k).sum()), p[bins == k].mean(), ready[bins == k].mean()) for k in range(10)]
    reliability = [(k, n, float(mean_p), float(share)) for k, n, mean_p, share in reliability if n]
    floor = ece_of_calibrated(p)
    out = {
        "n": len(said),
        "ready_share": float(ready.mean()),
        "brier": float(np.mean((p - ready) ** 2)),
        "brier_baseline": float(np.mean((ready.mean() - ready) ** 2)),
        "ece": ece(p, ready),
        "ece_calibrated_median": floor[0],
        "ece_calibrated_p95": floor[1],
        "reliability": reliability,
        "flagged": int(flagged.sum()),
        "short_if_flagged": float(1 - ready[flagged].mean()) if flagged.any() else None,
        "short_if_not": float(1 - ready[~flagged].mean()) if (~flagged).any() else None,
    }
    if deadlines:
        out["deadlines"] = _deadlines_kept(sim, [(r, bid) for r, _, bid in said if r["at_risk"] and r["plug_in_by"]])
    return out


def _deadlines_kept(sim: Simulation, flagged: list[tuple[dict, str]]) -> dict:
    """Plug each flagged car in at its `plug_in_by` and park it until the pick-up: was it ready?

    Only where that is possible: the car's station has a charger and no other trip lies between the deadline
    and the pick-up. The level at the deadline is the car's true one; charging is the simulator's (taper,
    charge limit, temperature), one draw per booking.
    """
    bookings = {b.booking_id: b for b in sim.bookings}
    cars = {c.car_id: c for c in sim.cars}
    kept, seen, skipped = [], [], {"no_charger": 0, "trip_between": 0}
    for r, bid in flagged:
        b, car = bookings[bid], cars[bookings[bid].car.car_id]
        deadline = sim.hours(datetime.fromisoformat(r["plug_in_by"].replace("Z", "+00:00")))
        between = any(
            o.car is b.car
            and o is not b
            and not o.cancelled
            and o.actual_start < b.actual_start
            and o.actual_end > deadline
            for o in sim.bookings
        )
        if car.charger_kw <= 0 or between:
            skipped["no_charger" if car.charger_kw <= 0 else "trip_between"] += 1
            continue
        level = sim.trajectories[car.car_id].at(deadline)
        state = world.Parked(levels=np.array([level]), plugged=np.array([True]), staff_in=np.array([np.inf]))
        rng = np.random.default_rng(zlib.crc32(f"plug:{bid}".encode()))
        state, _ = world.park(state, car, sim.weather, deadline, b.actual_start, rng)
        kept.append(bool(state.levels[0] >= r["required_level"]))
        seen.append(
            {"booking_id": bid, "required": r["required_level"], "charge_needed": r["charge_needed"]}
            | {"hours": round(b.actual_start - deadline, 2), "level_at_deadline": round(level, 1)}
            | {
                "level_at_pickup": round(float(state.levels[0]), 1),
                "car_charge_per_hour": round(car.charge_pct_per_hour, 1),
            }
        )
    return {"checked": len(kept), "ready": float(np.mean(kept)) if kept else None, "skipped": skipped, "seen": seen}


def details(creation: dict, latest: dict, truth: dict) -> list[dict]:
    """Every scored prediction, for looking into where a method errs (`--details`)."""
    rows = []
    for moment, table in (("creation", creation), ("latest", latest)):
        for booking_id, scored in table.items():
            if booking_id in truth:
                rows.append(
                    {"booking_id": booking_id, "moment": moment, "actual": truth[booking_id]}
                    | {m: [s.level, s.lower, s.upper, round(s.horizon_hours, 2)] for m, s in scored.items()}
                )
    return rows


COLUMNS = {"n": "n", "mae": "MAE", "rmse": "RMSE", "bias": "bias", "within_5": "<=5", "within_10": "<=10"}
COLUMNS |= {"within_15": "<=15", "coverage_95": "cov95", "width_95": "width", "mae_<6h": "MAE<6h"}
COLUMNS |= {"mae_6-24h": "MAE6-24h", "mae_>24h": "MAE>24h"}
SHARES = {"within_5", "within_10", "within_15", "coverage_95"}


def _cell(key: str, value) -> str:
    if value is None or key == "n":
        return "-" if value is None else str(value)
    return f"{100 * value:.1f}%" if key in SHARES else f"{value:.2f}"


def print_table(result: dict, methods: tuple[str, ...] = METHODS) -> None:
    for moment in MOMENTS:
        print(f"\n== {moment} ({'prediction at creation' if moment == 'creation' else 'latest before pick-up'})")
        print(f"{'method':<12}" + "".join(f"{title:>10}" for title in COLUMNS.values()))
        for method in methods:
            m = result[moment][method]
            cells = (_cell(key, m.get(key, "-" if key == "n" else None)) for key in COLUMNS)
            print(f"{method:<12}" + "".join(f"{cell:>10}" for cell in cells))
        svc, orc = result[moment]["service"], result[moment]["oracle"]
        if svc.get("mae") and orc.get("mae"):
            print(f"service MAE / oracle MAE = {svc['mae'] / orc['mae']:.3f}")
