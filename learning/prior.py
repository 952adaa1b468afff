"""The simulated fleet as a prior for a challenger trained on the fleet's own outcomes.

A new install has no outcomes, so its bootstrap champion learns the simulator (`train_model
--synthetic`). A retrain then learns the fleet itself, with the simulated rows added as a prior
whose weight shrinks as the fleet's outcomes accumulate: the prior counts as PRIOR_STRENGTH
fleet outcomes when the fleet has none, and as K * K / (K + n) of them when the fleet has n.
Its share of the training weight is then K^2 / (K^2 + n (K + n)): a half when n is about 0.6 K,
a tenth at 2.6 K. Where the fleet's rows are dense the trees follow them whatever the weights;
the weight decides where the two worlds disagree on the same inputs (staff who do or do not
recharge low cars, a charger's speed), and there the fleet must win once it has seen enough.

The simulated rows are the ones the bootstrap model was trained on: the same fleet (the
champion's registry row records it) and deterministic seed. Simulating the default bootstrap
fleet takes about 40 s here, so its rows are cached in MODEL_DIR, keyed by the fleet and by the
source of the simulator and of the features (a change to either makes a new cache file).
"""

from __future__ import annotations

import hashlib
import json
import logging
import pickle
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

import pandas as pd

import core.features
import core.simulation
from core.features import GAP_FEATURES, TRIP_FEATURES, replay
from core.simulation.fleet import FleetConfig, simulate
from core.simulation.world import World

logger = logging.getLogger(__name__)

# The bootstrap fleet of `train_model --synthetic` (its seed is not the accuracy benchmark's 7).
SYNTHETIC_SEED = 1001
BOOTSTRAP_FLEET = FleetConfig(cars=400, renters=1200, days=120, seed=SYNTHETIC_SEED)
# K: how many fleet outcomes the prior is worth while the fleet has none. Chosen on simulator seed 11
# (world-shift worlds slow_chargers, charge_limit, no_staff and default), never on the benchmark's seed 7:
# see docs/models.md, "Registry and retraining".
PRIOR_STRENGTH = 300.0


@dataclass(frozen=True)
class PriorRows:
    """The prior's gap and trip rows and how many simulated outcomes they come from."""

    fleet: FleetConfig
    gaps: pd.DataFrame
    trips: pd.DataFrame
    outcomes: int


def prior_weight(*, fleet_outcomes: int, prior_outcomes: int, strength: float = PRIOR_STRENGTH) -> dict:
    """Each prior row's weight (a fleet row weighs 1) and what it adds up to, for the registry row.

    The prior's total weight is strength^2 / (strength + fleet_outcomes) fleet outcomes, spread over
    its rows in proportion (gap and trip rows alike, as a fleet outcome brings one of each).
    """
    if strength <= 0 or prior_outcomes <= 0:
        return {"strength": strength, "row_weight": 0.0, "total_weight": 0.0, "share": 0.0}
    total = strength * strength / (strength + fleet_outcomes)
    return {
        "strength": strength,
        "fleet_outcomes": fleet_outcomes,
        "prior_outcomes": prior_outcomes,
        "row_weight": total / prior_outcomes,
        "total_weight": round(total, 3),
        "share": round(total / (total + fleet_outcomes), 4),
    }


def fleet_to_json(config: FleetConfig) -> dict:
    """A simulated fleet as the registry records it (`hyperparameters["simulated_fleet"]`)."""
    data = asdict(config)
    data["epoch"] = config.epoch.isoformat()
    return data


def fleet_from_json(data: dict) -> FleetConfig:
    world = World(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.get("world", {}).items()})
    fields = {k: v for k, v in data.items() if k not in ("world", "epoch")}
    if "epoch" in data:
        fields["epoch"] = datetime.fromisoformat(data["epoch"])
    return FleetConfig(**fields, world=world)


def _source_digest() -> str:
    """The simulator's and the features' source: rows cached by an older version are not reused."""
    digest = hashlib.sha256()
    paths = [Path(core.features.__file__), *sorted(Path(core.simulation.__file__).parent.glob("*.py"))]
    for path in paths:
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _cache_path(directory: Path, config: FleetConfig) -> Path:
    key = json.dumps([fleet_to_json(config), GAP_FEATURES, TRIP_FEATURES, _source_digest()], sort_keys=True)
    return Path(directory) / "priors" / f"prior-{hashlib.sha256(key.encode()).hexdigest()[:24]}.pkl"


def prior_rows(config: FleetConfig, *, cache_dir: Path | None = None) -> PriorRows:
    """The simulated fleet's gap and trip rows (with the levels reported mid-gap), cached in `cache_dir`."""
    path = _cache_path(cache_dir, config) if cache_dir is not None else None
    if path is not None and path.is_file():
        try:
            gaps, trips, outcomes = pd.read_pickle(path)
            return PriorRows(config, gaps, trips, outcomes)
        except (OSError, ValueError, EOFError, pickle.UnpicklingError):  # truncated or foreign: simulate again
            logger.warning("prior cache %s unreadable, simulating again", path)
    sim = simulate(config)
    outcomes = sim.outcomes()
    gap_rows, trip_rows, _ = replay(outcomes, sim.readings())
    gaps = pd.DataFrame(gap_rows, columns=[*GAP_FEATURES, "target", "at", "end"])
    trips = pd.DataFrame(trip_rows, columns=[*TRIP_FEATURES, "target", "at", "end"])
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        pd.to_pickle((gaps, trips, len(outcomes)), tmp)
        tmp.replace(path)
    return PriorRows(config, gaps, trips, len(outcomes))
