"""The model cascade: the gap and trip models' distributions composed through a car's schedule.

The pattern walk (`physics.walk` with a `trace`) lays out the schedule as segments and gives
each its expected starting level. Every segment's features are then built at once and each
quantile booster runs once over all gaps and once over all trips (batch inference, not one
call per booking). Monte Carlo samples then move through the segments in order, each drawing
its change from the segment's predicted quantiles (and, after a future trip, whether the car
is left plugged in from the renter's habit), clipped to 0..100 and to the car's charge ceiling. A
target's prediction is the samples' median; its 95 % interval their 2.5 and 97.5 percentiles.

The boosters price the residual of the car's own physics (`core.gbm`), so each row's `physics`
column is recomputed at every starting level it is priced at.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.special import ndtr

from core.features import (
    FEATURES,
    PHYSICS,
    CarState,
    FeatureBook,
    car_ceiling,
    gap_physics_of,
    gap_row,
    plug_probability,
    trip_physics_of,
    trip_row,
)
from core.gbm import QUANTILES, GapTripModel
from core.physics import Z_95, Checkpoint

SAMPLES = 600
# How much one sample's segments err together (same car, weather and renters being off the same way):
# the correlation of the normal scores its quantile draws come from. Chosen on simulator seed 11, not
# on the benchmark's seed; 0 would treat every segment as independent and give too narrow cascades.
SEGMENT_CORRELATION = 0.5
# Each segment is priced at these starting levels (and the walk's expected one); every sample then
# takes the change at its own level, so staff recharges of low cars and the taper near full follow
# the sample, not the average path.
LEVEL_GRID = (5.0, 20.0, 35.0, 50.0, 65.0, 80.0, 95.0)
_Q = np.asarray(QUANTILES)
_FIXED_GRID = np.array(LEVEL_GRID)
# The point prediction (`_likeliest`): the most likely band of +-WITHIN points among levels costing at most
# MAE_SLACK more mean absolute error than the median, when it is MIN_GAIN likelier than the median's band.
# Chosen on simulator seed 11, not on the benchmark's seed.
WITHIN = 10.0
MIN_GAIN = 0.05
MAE_SLACK = 0.03
_CANDIDATES = np.linspace(0.0, 100.0, 201)
_ROW_OFFSET = 1000.0  # levels are within 0..100


@dataclass(frozen=True)
class ModelPoint:
    level: float
    lower: float
    upper: float
    changes: list[float]  # median change of each segment since the previous target
    start: float  # the median level those changes start from (at the previous target, or the reading)


def _gap_charging(car: CarState, start, p_plugged: float, known: bool) -> float | None:
    """Known plug state of a gap: from the walk, or the car's last return if nothing happened since."""
    if known:
        return p_plugged
    if car.last_end is not None and car.last_charging is not None and car.last_end <= start:
        return float(car.last_charging)
    return None


def _since_return(car: CarState, start) -> float:
    """Hours the car had been parked when the walk starts mid-gap (from a reading after its last return)."""
    if car.last_end is None or car.last_end > start:
        return 0.0
    return (start - car.last_end).total_seconds() / 3600.0


def _hours(start, end) -> float:
    return max((end - start).total_seconds() / 3600.0, 0.0)


def _grid(level: float) -> np.ndarray:
    """Starting levels a segment is priced at: the fixed grid plus the walk's expected level."""
    level = min(max(level, 0.0), 100.0)
    if level != level:  # NaN sorts last, as `np.unique` would put it
        return np.array([*LEVEL_GRID, level])
    i = bisect.bisect_left(LEVEL_GRID, level)
    if i < len(LEVEL_GRID) and LEVEL_GRID[i] == level:
        return _FIXED_GRID
    return np.array([*LEVEL_GRID[:i], level, *LEVEL_GRID[i:]])


@dataclass(frozen=True)
class _Branch:
    """One way a segment can go (a gap plugged in, or not; a trip), priced at each level of `grid`."""

    grid: np.ndarray
    first: int  # its first row in the gap or trip batch; one row per grid level follows


class _Batch:
    """The feature rows of one segment kind: each branch's row repeated at each level of its grid.

    A branch's row is built once and the start level column filled in afterwards: building a
    dict per grid level was a sizeable part of a long cascade's time. The physics column follows
    each grid level (`physics(level)`): a car's ceiling or running empty depends on where it starts.
    """

    def __init__(self, kind: str):
        self.names = FEATURES[kind]
        self.level_column = self.names.index("start_level")
        self.physics_column = self.names.index(PHYSICS)
        self.rows: list[list[float]] = []
        self.grids: list[np.ndarray] = []
        self.physics: list[float] = []
        self.size = 0

    def add(self, row: dict[str, float], level: float, physics: Callable[[float], float]) -> _Branch:
        grid = _grid(level)
        self.rows.append([row[name] for name in self.names])
        self.grids.append(grid)
        self.physics.extend(physics(g) if g == g else 0.0 for g in grid.tolist())  # NaN: no level to start from
        branch = _Branch(grid, self.size)
        self.size += len(grid)
        return branch

    def matrix(self) -> np.ndarray:
        if not self.rows:
            return np.zeros((0, len(self.names)))
        x = np.repeat(np.asarray(self.rows, dtype=np.float64), [len(g) for g in self.grids], axis=0)
        x[:, self.level_column] = np.concatenate(self.grids)
        x[:, self.physics_column] = self.physics
        return x


def _grid_choice(grid: np.ndarray, levels: np.ndarray, pick: np.ndarray) -> np.ndarray | int:
    """Which grid level each sample takes its change at.

    Between two grid levels a sample takes one or the other at random, weighted by its distance
    (`pick` is uniform): a mixture, not an average, so a threshold such as staff recharging cars
    below 30 % stays a jump (averaging "+70" and "-5" would give a change that never happens).
    Flat beyond the grid's ends.
    """
    if len(grid) == 1:
        return 0
    # The interior levels bracket every sample: k in 1..len - 1 without clipping (the grid is sorted, a NaN last).
    k = np.searchsorted(grid[1:-1], levels) + 1
    low, high = grid[k - 1], grid[k]
    # Unclipped, the weight still decides alike: `pick` is in [0, 1), so a weight above 1 takes k and one below
    # 0 (or NaN, next to a NaN grid level) takes k - 1, as their clipped values would.
    return k - 1 + (pick < (levels - low) / (high - low))


def _draw(q: np.ndarray, rows: np.ndarray, j: np.ndarray, wu: np.ndarray, below: np.ndarray, rest: np.ndarray):
    """Each sample's change: its quantile (`j`, `wu`) of the distribution in its row of `q` (C-ordered).

    Linear in the quantile level between the model's quantiles; `below` is j - 1 and `rest` 1 - wu, computed
    once for every move. Indexing the flat array is the same gather as `q[rows, j]`, without 2-d fancy indexing.
    """
    flat, start = q.ravel(), rows * q.shape[1]
    return flat[start + below] * rest + flat[start + j] * wu


def compose(
    model: GapTripModel,
    trace: list[tuple],
    *,
    car_id: str,
    book: FeatureBook,
    fleet_plug: float,
    start_std: float,
    seed: int = 0,
) -> list[ModelPoint]:
    """Predict every target in `trace` (from `physics.walk`), in trace order."""
    car = book.car(car_id)
    gaps, trips = _Batch("gap"), _Batch("trip")
    plan: list[tuple[str, list[_Branch], float]] = []
    last_renter = None
    first_gap = True
    # Nothing after the last target is read, so its segments are neither priced nor moved through. They still
    # count among the moves whose draws are drawn, so that every other move's random numbers stay what they were.
    last = max((k for k, item in enumerate(trace) if item[0] == "target"), default=-1)
    trailing = sum(1 for item in trace[last + 1 :] if item[0] != "target")
    for item in trace[: last + 1]:
        if item[0] == "gap":
            _, start, end, level, p_plugged, known = item
            charging = _gap_charging(car, start, p_plugged, known) if first_gap else (p_plugged if known else None)
            since = _since_return(car, start) if first_gap else 0.0
            hours = _hours(start, end)
            if charging is None:
                renter = book.renter(last_renter) if last_renter is not None else None
                p = plug_probability(car, renter, fleet_plug) if renter is not None else p_plugged
                branches = [
                    gaps.add(
                        gap_row(car, start=start, end=end, start_level=level, charging=c, since_return=since),
                        level,
                        gap_physics_of(car, hours=hours, charging=c),
                    )
                    for c in (False, True)
                ]
                plan.append(("gap", branches, p))
            else:
                plugged_in = charging >= 0.5
                row = gap_row(car, start=start, end=end, start_level=level, charging=plugged_in, since_return=since)
                plan.append(("gap", [gaps.add(row, level, gap_physics_of(car, hours=hours, charging=plugged_in))], 0.0))
        elif item[0] == "trip":
            _, start, end, level, trip = item
            last_renter = trip.user_id
            renter = book.renter(trip.user_id)
            row = trip_row(car, renter, start=start, end=end, start_level=level)
            plan.append(("trip", [trips.add(row, level, trip_physics_of(car, renter, hours=_hours(start, end)))], 0.0))
        else:
            plan.append(("target", [], 0.0))
        first_gap = first_gap and item[0] == "target"
    ceiling = car_ceiling(car)
    gap_q = np.ascontiguousarray(model.gap.quantiles(gaps.matrix()))  # `_draw` indexes them flat
    trip_q = np.ascontiguousarray(model.trip.quantiles(trips.matrix()))

    rng = np.random.default_rng(seed)
    levels = np.full(SAMPLES, _first_level(trace))
    if start_std > 0:
        levels = np.clip(levels + rng.normal(0.0, start_std, SAMPLES), 0.0, 100.0)
    moves = sum(1 for item in plan if item[0] != "target") + trailing
    rho = SEGMENT_CORRELATION
    shared = rng.standard_normal(SAMPLES)
    u = ndtr(rho * shared + np.sqrt(1 - rho * rho) * rng.standard_normal((moves, SAMPLES)))
    plugged = rng.random((moves, SAMPLES))
    pick = rng.random((moves, SAMPLES))
    # Where each sample's quantile falls between the model's quantiles, for every move at once.
    j = np.searchsorted(_Q, u).clip(1, len(_Q) - 1)
    wu = ((u - _Q[j - 1]) / (_Q[j] - _Q[j - 1])).clip(0.0, 1.0)
    below, rest = j - 1, 1 - wu
    after = np.empty((moves - trailing + 1, SAMPLES))  # the samples before the first move, then after each
    after[0] = levels
    # Samples that start at or below the car's limit never pass it: for them max(level, limit) is the limit.
    under_ceiling = bool(np.all(levels <= ceiling))
    at_target = []  # index into `after` at each target
    m = 0
    for kind, branches, p in plan:
        if kind == "target":
            at_target.append(m)
            continue
        q = trip_q if kind == "trip" else gap_q
        choice = _grid_choice(branches[0].grid, levels, pick[m])  # branches of a segment share their grid
        rows = branches[0].first + choice
        if len(branches) == 2:  # each sample's row in the branch it takes (plugged in or not), then one draw
            rows = np.where(plugged[m] < p, branches[1].first + choice, rows)
        delta = _draw(q, rows, j[m], wu[m], below[m], rest[m])
        # Nothing charges a car past its charge limit (not its charger, staff or a top-up on the road); a car
        # already above it stays where it is.
        cap = ceiling if under_ceiling else np.maximum(levels, ceiling)
        levels = np.maximum(np.minimum(levels + delta, cap), 0.0)
        m += 1
        after[m] = levels
    medians = np.median(after, axis=1)
    bounds = np.percentile(after[at_target], [2.5, 97.5], axis=1) if at_target else np.zeros((2, 0))
    if at_target:  # each target's level: its samples' most likely 20-point band, at no real cost in MAE
        medians[at_target] = np.clip(_likeliest(after[at_target], medians[at_target]), bounds[0], bounds[1])
    points, previous = [], 0
    for k, index in enumerate(at_target):
        changes = list(np.diff(medians[previous : index + 1]))
        points.append(
            ModelPoint(
                float(medians[index]), float(bounds[0, k]), float(bounds[1, k]), changes, float(medians[previous])
            )
        )
        previous = index
    return points


def _likeliest(samples: np.ndarray, medians: np.ndarray) -> np.ndarray:
    """Per row of `samples`, the level with the most samples within WITHIN points of it, among the
    levels whose mean absolute error is at most (1 + MAE_SLACK) times the median's; the median
    itself unless that raises the chance of landing within WITHIN points by MIN_GAIN or more.

    Why not the median: when a car may or may not be recharged by staff, the samples form two
    humps, and their median can fall in the empty stretch between them, a level the car will
    not have (a renter is shown 67 % for a car that will be at 8 % or at 90 %). The mean
    absolute error is nearly flat across that stretch, so moving into the likelier hump costs
    almost nothing in MAE and makes the prediction land within 10 points far more often.
    """
    rows, n = samples.shape
    ordered = np.sort(samples, axis=1) + _ROW_OFFSET * np.arange(rows)[:, None]  # rows apart: one search for all
    flat = ordered.ravel()
    cumulative = np.concatenate([[0.0], np.cumsum(flat)])  # one running sum over all rows, as `first` indexes it
    candidates = np.concatenate([_CANDIDATES[None, :].repeat(rows, 0), medians[:, None]], axis=1)
    shifted = candidates + _ROW_OFFSET * np.arange(rows)[:, None]
    first = np.arange(rows)[:, None] * n
    below = np.searchsorted(flat, shifted) - first  # samples under each candidate
    start = cumulative[first]
    under = cumulative[first + below] - start
    total = cumulative[first + n] - start
    mae = (shifted * below - under + (total - under) - shifted * (n - below)) / n
    inside = np.searchsorted(flat, shifted + WITHIN, side="right") - np.searchsorted(flat, shifted - WITHIN)
    allowed = mae <= mae[:, -1:] * (1 + MAE_SLACK) + 1e-9
    best = np.argmax(np.where(allowed, inside, -1), axis=1)
    gain = inside[np.arange(rows), best] - inside[:, -1]
    return np.where(gain >= MIN_GAIN * n, candidates[np.arange(rows), best], medians)


def _first_level(trace: list[tuple]) -> float:
    for item in trace:
        if item[0] in ("gap", "trip"):
            return float(item[3])
    return float("nan")


def apply(points: list[ModelPoint], checkpoints: list[Checkpoint]) -> None:
    """Replace the pattern walk's levels, intervals and step changes by the model's (same order)."""
    for point, checkpoint in zip(points, checkpoints, strict=True):
        if point.level != point.level:  # no segment before the target: the walk's level is the reading
            continue
        checkpoint.level = point.level
        checkpoint.std = max(point.upper - point.lower, 0.0) / (2 * Z_95)
        checkpoint.interval = (point.lower, point.upper)
        before = point.start
        for step, change in zip(checkpoint.steps, point.changes, strict=False):
            before += change
            step["battery_change"] = round(change, 2)
            step["battery_after"] = round(before, 2)
