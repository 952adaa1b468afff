"""World-shift suite: the accuracy bench on simulated worlds that each differ from the one the model learnt.

    .venv/bin/python -m bench.worlds                  # every world (about 22 minutes here)
    .venv/bin/python -m bench.worlds --quick          # a smoke run: small fleets, a small model
    .venv/bin/python -m bench.worlds --worlds winter,no_staff
    .venv/bin/python -m bench.worlds --worlds slow_chargers,no_staff --seed 11 --retrain-after-warmup
    .venv/bin/python -m bench.worlds --worlds default --cars 40 --renters 150 --days 60   # make bench-accuracy
    .venv/bin/python -m bench.worlds --worlds no_staff --seed 11 --keep /tmp/kept   # then bench.shadow_replay

What it does:
1. trains the bootstrap model ONCE, as `make run` does (`train_model --synthetic --seed 1001`, the
   default world only), in a template directory; a second template has no model;
2. for each world (`default`, then `core.simulation.world.SHIFTS`), simulates its fleet on the
   evaluation seed (`--seed`, default 7: never the training seed) and replays the stream through
   the service twice, on fresh copies of the templates: with the champion serving (the default)
   and with no model (the pattern cascade alone);
3. scores both replays as bench.accuracy does (at creation and latest before pick-up, after the
   warm-up, by horizon, with 95 % coverage) beside persistence, the seed's EMA cascade and the
   oracle, which knows the shifted world's hidden parameters;
4. prints one table per world and a summary of issue 13's targets per world, and writes JSON to
   bench/results/worlds-seed<seed>[-quick].json.

`--retrain-after-warmup` adds a third replay per world: the champion serving, and at the end of the
warm-up `manage.py retrain` on the outcomes recorded so far (as the weekly task would run it), then
the rest of the stream. Its scores are the `retrained` method; the summary says whether it promoted
and what the retrain compared.

Worlds whose cars stay parked longer (`World.gap_scale`) get proportionally more cars, so that every
world scores about as many pick-ups.
"""

from __future__ import annotations

import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from datetime import timedelta
from pathlib import Path

from bench.accuracy import METHODS, details, print_table, replay, score
from bench.common import (
    RESULTS,
    BenchError,
    Service,
    manage,
    parser_for,
    service_copy,
    service_env,
    service_prepare,
    text_table,
    write_json,
)
from core.simulation.fleet import FleetConfig, simulate
from core.simulation.world import SHIFTS, world_named

WORLDS = ("default", *SHIFTS)
SUITE_METHODS = ("service", "pattern", "persistence", "seed_ema", "oracle")
BASELINE_METHODS = ("service", "persistence", "seed_ema")  # scored on the pattern replay (its `service` is `pattern`)
COVERAGE = (0.92, 0.98)
ECE_MAX, DEADLINES_READY = 0.03, 0.90  # issue 16's readiness targets


@dataclass(frozen=True)
class Size:
    cars: int
    renters: int
    days: int
    warmup_days: float
    train_args: tuple[str, ...]  # extra `train_model` arguments (the full size trains as `make run` does)


FULL = Size(cars=20, renters=150, days=30, warmup_days=14.0, train_args=())
QUICK_TRAINING = ("--cars", "60", "--renters", "180", "--days", "40")
QUICK = Size(cars=6, renters=40, days=16, warmup_days=7.0, train_args=QUICK_TRAINING)


def world_config(name: str, size: Size, seed: int) -> FleetConfig:
    world = world_named(name)
    cars = max(1, round(size.cars * world.gap_scale))
    return FleetConfig(cars=cars, renters=max(size.renters, cars), days=size.days, seed=seed, world=world)


def _retrain(service: Service, into: dict) -> None:
    """`manage.py retrain` on the service's database now (what the weekly task runs), and what it decided."""
    t0 = time.perf_counter()
    try:
        output = manage(service.env, "retrain")
    except BenchError as exc:
        into |= {"error": str(exc)[-500:], "promoted": False}
        return
    time.sleep(2.5)  # the web process re-reads the champion every MODEL_REFRESH_SECONDS (1 here)
    [row] = [m for m in service.get("/api/v1/models?limit=2")["models"] if m["source"] == "outcomes"][:1]
    into |= {
        "promoted": row["status"] == "champion",
        "notes": row["notes"],
        "challenger": {k: v for k, v in row["holdout_metrics"].items() if k not in ("segments", "calibration")},
        "champion": row["champion_metrics"],
        "prior": row["hyperparameters"].get("prior"),
        "output": output[-2000:],
        "seconds": round(time.perf_counter() - t0, 1),
    }


def world_run(
    name: str,
    config: FleetConfig,
    templates: dict[str, Path],
    workdir: Path,
    warmup_days: float,
    retrain: bool = False,
    with_details: bool = False,
    keep: Path | None = None,
) -> dict:
    """Both replays of one world's stream, scored; the pattern replay's service becomes the `pattern` method.

    With `retrain`, a third replay retrains after the warm-up; its service becomes the `retrained` method.
    """
    t0 = time.perf_counter()
    sim = simulate(config)
    results, calls, info = {}, {}, {}
    retrained: dict = {}
    for kind in ("model", "pattern", *(("retrain",) if retrain else ())):
        template = templates["pattern" if kind == "pattern" else "model"]
        env = {"MODEL_REFRESH_SECONDS": "1"} if kind == "retrain" else None
        service = Service(service_copy(template, (keep or workdir) / f"{name}-{kind}"), env)
        pause = (config.epoch + timedelta(days=warmup_days), lambda s=service: _retrain(s, retrained))
        try:
            info[kind] = service.get("/api/v1/model/info")
            creation, latest, stats = replay(
                sim,
                service,
                progress_every=0,
                with_oracle=kind == "model",
                pause=pause if kind == "retrain" else None,
            )
        finally:
            service.stop()
        methods = METHODS if kind == "model" else BASELINE_METHODS if kind == "pattern" else ("service",)
        results[kind] = score(sim, creation, latest, warmup_days, methods)
        truth = results[kind].pop("_truth")
        if with_details and kind == "model":
            results[kind]["details"] = details(creation, latest, truth)
        calls[kind] = {**stats, "by_status": dict(stats["by_status"])}
        if stats["errors"]:
            print(f"  {name} ({kind}): {stats['errors']} of {stats['calls']} calls failed", file=sys.stderr)
    result = results["model"]
    for moment in ("creation", "latest"):
        result[moment]["pattern"] = results["pattern"][moment]["service"]
        if retrain:
            result[moment]["retrained"] = results["retrain"][moment]["service"]
    if retrain:
        result["retrain"] = retrained
    result |= {
        "world": name,
        "fleet": {"cars": config.cars, "renters": config.renters, "days": config.days, "seed": config.seed},
        "hidden": asdict(config.world),
        "bookings": len(sim.bookings),
        "calls": calls,
        "model_info": info,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    result["targets"] = targets(result)
    return result


def targets(result: dict) -> dict[str, dict]:
    """Issue 13's targets for one world: each with the service's value, the bound it must meet, and whether it does."""
    latest, creation = result["latest"], result["creation"]
    svc, orc = latest["service"], latest["oracle"]
    best = min(latest[m]["mae"] for m in ("pattern", "persistence", "seed_ema"))
    out = {
        "latest_vs_simple": _target(svc["mae"], best, svc["mae"] <= best),
        "latest_vs_oracle": _target(svc["mae"], b := max(1.3 * orc["mae"], orc["mae"] + 1.5), svc["mae"] <= b),
        "latest_within_10": _target(svc["within_10"], 0.95, svc["within_10"] >= 0.95),
        "creation_vs_oracle": _target(
            creation["service"]["mae"], b := 1.15 * creation["oracle"]["mae"], creation["service"]["mae"] <= b
        ),
    }
    worst = None  # the horizon bucket where the service loses most to persistence, at creation
    for key in (k for k in creation["service"] if k.startswith("mae_")):
        mine, theirs = creation["service"][key], creation["persistence"][key]
        if mine is not None and theirs is not None and (worst is None or mine - theirs > worst[0] - worst[1]):
            worst = (mine, theirs, key.removeprefix("mae_"))
    if worst is not None:
        out["creation_buckets_vs_persistence"] = _target(worst[0], worst[1], worst[0] <= worst[1]) | {
            "bucket": worst[2]
        }
    for moment in ("creation", "latest"):
        cov = result[moment]["service"].get("coverage_95")
        ok = cov is not None and COVERAGE[0] <= cov <= COVERAGE[1]
        out[f"coverage_{moment}"] = _target(cov, COVERAGE, ok)
    return out


def _target(value, bound, ok: bool) -> dict:
    return {"value": value, "bound": bound, "pass": bool(ok)}


SUMMARY = (  # (target, column title, how a value and its bound are shown)
    ("latest_vs_simple", "latest<=simple", "{value:.2f}<={bound:.2f}"),
    ("latest_vs_oracle", "latest<=oracle*", "{value:.2f}<={bound:.2f}"),
    ("latest_within_10", "latest<=10", "{value:.1%}"),
    ("creation_vs_oracle", "creat<=1.15orc", "{value:.2f}<={bound:.2f}"),
    ("creation_buckets_vs_persistence", "creat buckets", "{bucket} {value:.2f}<={bound:.2f}"),
    ("coverage_creation", "cov creat", "{value:.1%}"),
    ("coverage_latest", "cov latest", "{value:.1%}"),
)


def summary_table(results: list[dict]) -> str:
    """One line per world: each target's value against its bound, `ok` or `FAIL`."""
    rows = [["world", "n", *(title for _, title, _ in SUMMARY), "passed"]]
    for r in results:
        cells = [r["world"], str(r["scored_bookings"])]
        for key, _, shape in SUMMARY:
            t = r["targets"].get(key)
            ok = t is not None and t["pass"]
            cells.append("-" if t is None or t["value"] is None else f"{shape.format(**t)} {'ok' if ok else 'FAIL'}")
        cells.append(f"{sum(t['pass'] for t in r['targets'].values())}/{len(r['targets'])}")
        rows.append(cells)
    notes = (
        "latest<=simple: service MAE <= min(pattern, persistence, seed EMA); latest<=oracle*: <= max(1.3 x oracle, "
        "oracle + 1.5);\nlatest<=10: within 10 points >= 95 %; creat<=1.15orc: MAE at creation <= 1.15 x oracle;\n"
        "creat buckets: the horizon bucket where the service loses most to persistence at creation (must not lose);\n"
        f"cov: 95 % interval coverage in {COVERAGE[0]:.0%}..{COVERAGE[1]:.0%}."
    )
    return "\n".join([text_table(rows, rule=False), "", notes])


def _calibrated(x: dict) -> str:
    """The ECE an honest forecaster would show here, and whether this one's is beyond it."""
    median, p95 = x.get("ece_calibrated_median"), x.get("ece_calibrated_p95")
    if median is None:
        return "-"
    return f"{median:.3f} / {p95:.3f} {'consistent' if x['ece'] <= p95 else 'beyond'}"


def readiness_table(results: list[dict]) -> str:
    """Issue 16's readiness figures per world and moment, each target `ok` or `FAIL`."""
    rows = [["world", "moment", "n", "ready", "Brier (fleet share)", "ECE", "if calibrated", "flagged"]]
    rows[0] += ["short: flagged/not"]
    rows[0] += ["deadline kept (checked)", "passed"]
    for r in results:
        for moment in ("creation", "latest"):
            x = r["readiness"][moment]
            if not x["n"]:
                rows.append([r["world"], moment, "0", *["-"] * 8])
                continue
            checks = [x["brier"] < x["brier_baseline"], x["ece"] <= ECE_MAX]
            kept = x.get("deadlines", {})
            if kept.get("ready") is not None:
                checks.append(kept["ready"] >= DEADLINES_READY)
            short = [x["short_if_flagged"], x["short_if_not"]]
            rows.append(
                [
                    r["world"],
                    moment,
                    str(x["n"]),
                    f"{x['ready_share']:.1%}",
                    f"{x['brier']:.3f} ({x['brier_baseline']:.3f}) {'ok' if checks[0] else 'FAIL'}",
                    f"{x['ece']:.3f} {'ok' if checks[1] else 'FAIL'}",
                    _calibrated(x),
                    str(x["flagged"]),
                    " / ".join("-" if v is None else f"{v:.1%}" for v in short),
                    "-"
                    if len(checks) < 3
                    else f"{kept['ready']:.1%} ({kept['checked']}) {'ok' if checks[2] else 'FAIL'}",
                    f"{sum(checks)}/{len(checks)}",
                ]
            )
    note = (
        f"Brier: of probability_ready, below that of the fleet's share of ready pick-ups; ECE: 10 bins, <= {ECE_MAX};"
        "\nif calibrated: the ECE a perfectly calibrated forecaster shows with the same probabilities and n (outcomes"
        "\ndrawn from them), median / 95th percentile; an ECE above the 95th percentile is miscalibration, not noise;"
        "\nshort: the share whose level at pick-up was below its need, among bookings flagged at risk / the others;"
        f"\ndeadline kept: flagged at the latest moment, plugged in at plug_in_by (counterfactual), ready >= "
        f"{DEADLINES_READY:.0%}."
    )
    return "\n".join([text_table(rows, rule=False), "", note])


def retrain_table(results: list[dict]) -> str:
    """Per world: whether the retrain after the warm-up promoted, what it compared, and the suite's MAE after."""
    rows = [
        [
            "world",
            "promoted",
            "bookings",
            "challenger",
            "champion",
            "prior share",
            "latest MAE kept/retrained",
            "creation MAE kept/retrained",
            "cov latest kept/retrained",
        ]
    ]
    for r in results:
        t = r.get("retrain")
        if t is None:
            continue
        mine, theirs, prior = t.get("challenger", {}), t.get("champion") or {}, t.get("prior") or {}
        lat, cre = r["latest"], r["creation"]
        rows.append(
            [
                r["world"],
                "error" if "error" in t else "yes" if t["promoted"] else "no",
                str(mine.get("bookings", "-")),
                f"{mine.get('mae', float('nan')):.2f} cov {mine.get('coverage_95', float('nan')):.1%}",
                f"{theirs.get('mae', float('nan')):.2f} cov {theirs.get('coverage_95', float('nan')):.1%}",
                f"{prior.get('share', 0.0):.1%}",
                f"{lat['service']['mae']:.2f} / {lat['retrained']['mae']:.2f}",
                f"{cre['service']['mae']:.2f} / {cre['retrained']['mae']:.2f}",
                f"{lat['service'].get('coverage_95', 0):.1%} / {lat['retrained'].get('coverage_95', 0):.1%}",
            ]
        )
    note = (
        "challenger, champion: cascade-priced MAE and 95 % coverage on the retrain's held-out bookings (each at the "
        "return of the 1 to 3 bookings before it);\nlatest/creation MAE: the suite's scores after the warm-up, with "
        "the champion kept and with the retrain run at the end of the warm-up."
    )
    return "\n".join([text_table(rows, rule=False), "", note])


def _prior_warm(template: Path) -> None:
    """Simulate the retrain's prior once into the template's MODEL_DIR, so every world's copy reads it."""
    code = (
        "from django.conf import settings; from learning.prior import prior_rows; "
        "from learning.training import prior_fleet_for; from learning.champion import champion_row; "
        "prior_rows(prior_fleet_for(champion_row()), cache_dir=settings.MODEL_DIR)"
    )
    manage(service_env(template), "shell", "-c", code)


def main(argv: list[str] | None = None) -> None:
    parser = parser_for(__doc__)
    parser.add_argument("--quick", action="store_true", help="small fleets and a small model: a smoke run")
    parser.add_argument("--worlds", default=",".join(WORLDS), help=f"comma-separated, of: {', '.join(WORLDS)}")
    parser.add_argument("--seed", type=int, default=7, help="evaluation seed of every world (the model trains on 1001)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--cars", type=int, help="cars of every world (before its gap scale), instead of the size's")
    parser.add_argument("--renters", type=int, help="renters of every world, instead of the size's")
    parser.add_argument("--days", type=int, help="days of every world, instead of the size's")
    parser.add_argument("--details", action="store_true", help="also write every scored prediction to the JSON")
    parser.add_argument(
        "--keep",
        type=Path,
        help="keep every replay's service directory (database, model) in this folder, as <world>-<replay>; "
        "bench.shadow_replay reads them",
    )
    parser.add_argument(
        "--retrain-after-warmup",
        action="store_true",
        help="a third replay per world that runs `manage.py retrain` at the end of the warm-up",
    )
    args = parser.parse_args(argv)
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
    names = [n.strip() for n in args.worlds.split(",") if n.strip()]
    for name in names:
        world_named(name)  # refuse an unknown world before training anything
    size = QUICK if args.quick else FULL
    overrides = {name: getattr(args, name) for name in ("cars", "renters", "days") if getattr(args, name)}
    size = replace(size, **overrides)

    started = time.perf_counter()
    results = []
    with tempfile.TemporaryDirectory(prefix="bp-worlds-") as tmp:
        t0 = time.perf_counter()
        templates = {
            "model": service_prepare(Path(tmp) / "template-model", model=True, train_args=size.train_args),
            "pattern": service_prepare(Path(tmp) / "template-pattern", model=False),
        }
        print(f"bootstrap model trained on the default world (seed 1001) in {time.perf_counter() - t0:.0f} s")
        if args.retrain_after_warmup:
            _prior_warm(templates["model"])
        for name in names:
            config = world_config(name, size, args.seed)
            result = world_run(
                name,
                config,
                templates,
                Path(tmp),
                size.warmup_days,
                args.retrain_after_warmup,
                args.details,
                args.keep,
            )
            results.append(result)
            print(
                f"\n######## world {name}: {config.cars} cars, {config.days} days, seed {config.seed}, "
                f"{result['scored_bookings']} pick-ups scored after {size.warmup_days:g} days "
                f"({result['seconds']:.0f} s)"
            )
            print_table(result, SUITE_METHODS + (("retrained",) if args.retrain_after_warmup else ()))
            if "retrain" in result:
                print(f"retrain after the warm-up: {result['retrain'].get('notes') or result['retrain'].get('error')}")
    wall = time.perf_counter() - started
    print(f"\n######## summary: issue 13's targets per world ({wall / 60:.1f} min)\n")
    print(summary_table(results))
    print("\n######## readiness (issue 16): required levels drawn per booking in 20..60 %\n")
    print(readiness_table(results))
    if args.retrain_after_warmup:
        print("\n######## the retrain after the warm-up\n")
        print(retrain_table(results))
    suffix = ("-quick" if args.quick else "") + ("-retrain" if args.retrain_after_warmup else "")
    payload = {"size": asdict(size), "seed": args.seed, "wall_seconds": round(wall, 1), "worlds": results}
    path = write_json(args.out / f"worlds-seed{args.seed}{suffix}.json", payload)
    print(f"\nJSON: {path}")


if __name__ == "__main__":
    main()
