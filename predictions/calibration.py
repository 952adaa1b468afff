"""Intervals kept honest online: conformal margins per kind of prediction, learned from scored outcomes.

Why: the predictors' 95 % intervals are calibrated on segments whose schedule was known. A
prediction made when a booking is created, days ahead, cannot know the bookings that will be
made for the same car in between, and those drain it before the pick-up; its interval is too
narrow (in the accuracy benchmark, 77 % coverage at 24 to 72 hours ahead). Nothing in a request
says how much of the schedule is still to come, so the service learns it from its own record.

Each kind of prediction keeps two margins, in points, added below and above the predictor's
interval. A kind is: model or pattern cascade; the trigger that made it, and whether it was for
the event's own booking or a later one re-predicted in its cascade; and its lead time, the hours
from the present (`bookings.selectors.fleet_clock`) to the pick-up. When a booking starts and
its predictions are scored, each kind that predicted it moves its margins by adaptive conformal
inference (Gibbs and Candès, 2021) on the conformalized quantile interval (Romano et al., 2019):
`margin += STEP * (share of misses on that side - 2.5 %)`. A side that misses more than 2.5 % of
the time widens, one that misses less narrows, and each settles where it misses 2.5 %. One
booking counts once per kind, however many of its predictions were of that kind (they err
together).

Only outcomes already observed move the margins: a prediction is widened by what was learned
before it was made. STEP and the kinds were chosen on simulator seed 11, not on the accuracy
benchmark's seed.

A candidate that starts serving a kind (shadow scoring) has no margins of its own: its first
predictions borrow the default predictor's for the same kind, and its row, when its first booking is
scored, starts from those margins (`DEFAULT_PREDICTORS`), not from 0. Adaptive conformal inference
pays about `margin / STEP` misses on a side while a margin climbs from where it starts to where it
settles; a row started at 0 under a predictor whose margins had to be 20 or 40 points cost a few
points of coverage on each new kind (bench/worlds.py --seed 11: creation coverage 79 % over a key's
first 30 bookings, 86 to 91 % over its next 70).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime
from functools import lru_cache

from django.conf import settings
from django.db import connection, transaction

from common.process_cache import forget, kept_or_computed
from common.rows import insert_missing, instances, keyed_sql, parameter_rows
from core.readiness import PIT_BINS, LevelDistribution, PitCalibration
from predictions.models import IntervalCalibration, ReadinessCalibration

STEP = 5.0  # points a side moves per scored booking that missed it (it narrows by STEP * TAIL per hit)
TAIL = 0.025  # each side of a 95 % interval
MARGIN_LIMITS = (-10.0, 60.0)  # points: a side may shrink a little, or widen to most of the scale
LEAD_TIMES = ((6.0, "<6h"), (24.0, "6-24h"), (72.0, "24-72h"), (math.inf, ">72h"))
MARGINS_CACHE_KEY = "predictions:calibration_margins"
PIT_CACHE_KEY = "predictions:readiness_calibration"
PIT_DECAY = 0.995  # per scored booking of a lead time: the recalibration follows about the last 200
PIT_PRIOR = 20.0  # outcomes spread evenly (no recalibration) that the learned ones are blended with
DEFAULT_PREDICTORS = ("model", "pattern")  # whose margins a new kind borrows and starts from, the first that has one


def calibration_key(*, predictor: str, trigger: str, own: bool, present: datetime, target: datetime) -> str:
    """The kind of a prediction: who made it (model, pattern, persistence or median), on what trigger, for which
    booking, and how far ahead."""
    return f"{predictor}|{trigger}{'' if own else ' (cascade)'}|{lead_time_label(present=present, target=target)}"


def lead_time_label(*, present: datetime, target: datetime) -> str:
    """The `LEAD_TIMES` bucket of the hours from `present` to `target` (calibration and shadow scoring share it)."""
    hours = (target - present).total_seconds() / 3600.0
    return next(label for limit, label in LEAD_TIMES if hours < limit)


def calibration_margins() -> dict[str, tuple[float, float]]:
    """Every kind's (lower, upper) margin in points, in one query."""
    return {
        key: (lower, upper)
        for key, lower, upper in IntervalCalibration.objects.values_list("key", "margin_lower", "margin_upper")
    }


def calibration_margins_cached() -> dict[str, tuple[float, float]]:
    """`calibration_margins()`, kept for CALIBRATION_CACHE_SECONDS per process (every prediction reads them).

    A process that moves the margins forgets its copy (`calibration_learn`), so it serves its own
    learning at once, as reading the table would; other processes see it within the cache time,
    when their copy lags by the few bookings scored in those seconds.
    """
    ttl = settings.CALIBRATION_CACHE_SECONDS
    if ttl <= 0:
        return calibration_margins()
    return kept_or_computed(MARGINS_CACHE_KEY, calibration_margins, ttl)


def interval_widened(level: float, lower: float, upper: float, margins: tuple[float, float] | None) -> tuple:
    """The interval with each side moved out by its margin (in by a negative one), never past `level`, within 0..100."""
    if margins is None:
        return lower, upper
    return max(0.0, min(level, lower - margins[0])), min(100.0, max(level, upper + margins[1]))


def margins_borrowed(margins: dict[str, tuple[float, float]], key: str) -> tuple[float, float] | None:
    """A kind's margins, or, while it has none, those of the same kind under the default predictors."""
    if key in margins:
        return margins[key]
    predictor, _, rest = key.partition("|")
    for default in DEFAULT_PREDICTORS:
        if default != predictor and (found := margins.get(f"{default}|{rest}")) is not None:
            return found
    return None


def calibration_learn(*, scored: Iterable[tuple[str, float, float]], actual: float, at: datetime) -> None:
    """Move the margins of every kind that predicted a booking, now that its actual level is known.

    `scored` holds each prediction's (key, lower, upper) as it was served. Rows are created on
    first use, starting from the margins their predictions borrowed (`margins_borrowed`), then
    locked in key order and moved in one UPDATE of atomic expressions, so concurrent events for
    different cars neither lose an update nor deadlock.
    """
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])  # predictions, below, above
    for key, lower, upper in scored:
        if key:
            count = counts[key]
            count[0] += 1
            count[1] += actual < lower
            count[2] += actual > upper
    if not counts:
        return
    # Forget the cached margins now, so that this transaction's own cascade prices with the margins it just
    # moved, and again at commit, so that no copy read before the commit outlives it. (A rollback after this
    # point, which only a bug causes, could leave its margins cached for CALIBRATION_CACHE_SECONDS.)
    forget(MARGINS_CACHE_KEY)
    transaction.on_commit(lambda: forget(MARGINS_CACHE_KEY))
    keys = sorted(counts)
    with connection.cursor() as cursor:
        cursor.execute(keyed_sql(IntervalCalibration, "key", len(keys), select=("key",)), keys)
        missing = set(keys) - {key for (key,) in cursor.fetchall()}
        if missing:
            known = calibration_margins()
            rows = []
            for key in sorted(missing):
                lower, upper = margins_borrowed(known, key) or (0.0, 0.0)
                rows.append(IntervalCalibration(key=key, margin_lower=lower, margin_upper=upper))
            insert_missing(IntervalCalibration, rows)
        if len(keys) > 1 and connection.features.has_select_for_update:
            # one statement for every kind, its rows locked in key order first so that none deadlocks
            cursor.execute(keyed_sql(IntervalCalibration, "key", len(keys), lock=True, select=("id",)), keys)
    low, high = MARGIN_LIMITS
    moves = []
    for k in keys:  # per kind: the lower margin's step, the upper's, predictions, below, above
        n, b, a = counts[k]
        moves += [k, STEP * (b / n - TAIL), STEP * (a / n - TAIL), n, b, a]
    when = connection.ops.adapt_datetimefield_value(at)
    with connection.cursor() as cursor:
        cursor.execute(_margins_moved_sql(len(keys)), [low, high, low, high, when, *moves])


@lru_cache(maxsize=32)
def _margins_moved_sql(kinds: int) -> str:
    """The UPDATE that moves `kinds` kinds' margins by their own steps, each clamped to MARGIN_LIMITS, built once per
    count: the ORM's per-kind CASE expressions took a tenth of an event's CPU to build and compile.

    Atomic expressions of each row's own columns, as before; the steps come in as a derived table (UPDATE ... FROM,
    Postgres and SQLite from 3.33)."""
    qn = connection.ops.quote_name
    table = qn(IntervalCalibration._meta.db_table)
    least, greatest = ("LEAST", "GREATEST") if connection.vendor == "postgresql" else ("MIN", "MAX")
    steps = parameter_rows(("k", "dl", "du", "n", "b", "a"), kinds)
    lower, upper = qn("margin_lower"), qn("margin_upper")
    return (
        f"UPDATE {table} SET {lower} = {least}({greatest}({lower} + m.dl, %s), %s), "
        f"{upper} = {least}({greatest}({upper} + m.du, %s), %s), {qn('bookings')} = {qn('bookings')} + 1, "
        f"{qn('predictions')} = {qn('predictions')} + m.n, {qn('below')} = {qn('below')} + m.b, "
        f"{qn('above')} = {qn('above')} + m.a, {qn('updated_at')} = %s "
        f"FROM ({steps}) AS m WHERE {table}.{qn('key')} = m.k"
    )


# --- readiness: the probability recalibrated by where actual levels fell ----------------------------------------


def lead_of(key: str) -> str:
    """The lead-time bucket of a calibration key (its last part)."""
    return key.rpartition("|")[2]


def pit_keys(*, calibration_key: str, shadow_kind: str) -> tuple[str, ...]:
    """The readiness recalibrations a prediction teaches and is priced with: its lead time, then its lead time and
    the car's last known state (`lead|charging`, `lead|parked`, `lead|unknown`) when its shadow kind says it."""
    lead = lead_of(calibration_key)
    if not lead:
        return ()
    state = shadow_kind.rpartition("|")[2].partition("-")[0] if shadow_kind else ""  # without the low band
    return (lead, f"{lead}|{state}") if state else (lead,)


def readiness_calibrations() -> dict[str, PitCalibration]:
    """Every recalibration (`core.readiness.PitCalibration`), in one query.

    A lead time's is blended with PIT_PRIOR outcomes spread evenly; a lead time and state's with PIT_PRIOR
    outcomes spread as its lead time's are: a state seen rarely (a car left charging, booked days ahead) is
    recalibrated as its lead time is until its own outcomes say otherwise.
    """
    rows = {key: list(counts) for key, counts in ReadinessCalibration.objects.values_list("key", "counts")}
    leads = {
        k: PitCalibration.from_counts(c, PIT_PRIOR) for k, c in rows.items() if "|" not in k and len(c) == PIT_BINS
    }
    return leads | {
        key: PitCalibration.from_counts(counts, PIT_PRIOR, leads.get(key.partition("|")[0]))
        for key, counts in rows.items()
        if "|" in key and len(counts) == PIT_BINS
    }


def readiness_calibration_for(calibrations: dict[str, PitCalibration], keys: tuple[str, ...]) -> PitCalibration | None:
    """The finest of `keys` that has a recalibration (`pit_keys` lists them coarsest first)."""
    return next((calibrations[k] for k in reversed(keys) if k in calibrations), None)


def readiness_calibrations_cached() -> dict[str, PitCalibration]:
    """`readiness_calibrations()`, kept for CALIBRATION_CACHE_SECONDS per process, as the margins are."""
    ttl = settings.CALIBRATION_CACHE_SECONDS
    if ttl <= 0:
        return readiness_calibrations()
    return kept_or_computed(PIT_CACHE_KEY, readiness_calibrations, ttl)


def readiness_calibration_learn(
    *, scored: Iterable[tuple[tuple[str, ...], float, float, float]], actual: float, at: datetime
) -> None:
    """Where the actual level fell in each prediction's distribution (its `pit_keys`, level, lower, upper), per key.

    Each key's weights decay by PIT_DECAY and take one booking, split evenly over its predictions of that
    key (they err together). Rows are created on first use and locked in key order, so concurrent
    pick-ups neither lose an update nor deadlock. Only an outcome already observed moves them.
    """
    per_key: dict[str, list[float]] = defaultdict(list)
    for keys, level, lower, upper in scored:
        u = LevelDistribution.from_interval(level, lower, upper).cdf(actual)
        for key in keys:
            per_key[key].append(u)
    if not per_key:
        return
    forget(PIT_CACHE_KEY)
    transaction.on_commit(lambda: forget(PIT_CACHE_KEY))
    keys = sorted(per_key)

    # Every key's row exists before any is locked (one insert that skips those that do, in key order), then all
    # are locked in key order: creating a row while holding locks on others could deadlock with a transaction
    # doing the same the other way round.
    insert_missing(ReadinessCalibration, [ReadinessCalibration(key=k, counts=[0.0] * PIT_BINS) for k in keys])
    rows = instances(ReadinessCalibration, keyed_sql(ReadinessCalibration, "key", len(keys), lock=True), keys)
    for row in rows:
        counts = [c * PIT_DECAY for c in row.counts] if len(row.counts) == PIT_BINS else [0.0] * PIT_BINS
        pits = per_key[row.key]
        for u in pits:
            counts[min(int(u * PIT_BINS), PIT_BINS - 1)] += 1.0 / len(pits)
        row.counts, row.bookings = counts, row.bookings * PIT_DECAY + 1.0
    field = ReadinessCalibration._meta.get_field("counts")
    moved = [v for r in rows for v in (r.pk, field.get_db_prep_save(r.counts, connection), r.bookings)]
    with connection.cursor() as cursor:
        cursor.execute(_readiness_moved_sql(len(rows)), [connection.ops.adapt_datetimefield_value(at), *moved])


@lru_cache(maxsize=32)
def _readiness_moved_sql(count: int) -> str:
    """The UPDATE of `count` locked recalibration rows to their new counts, built once per count: the ORM's
    `bulk_update` built a CASE per column on every pick-up."""
    qn = connection.ops.quote_name
    table = qn(ReadinessCalibration._meta.db_table)
    rows = parameter_rows(("i", "c", "b"), count)
    return (
        f"UPDATE {table} SET {qn('counts')} = r.c, {qn('bookings')} = r.b, {qn('updated_at')} = %s "
        f"FROM ({rows}) AS r WHERE {table}.{qn('id')} = r.i"
    )
