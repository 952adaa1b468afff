"""Shadow scoring: every prediction also records what each candidate predictor would have said, and the fleet's
own pick-ups decide which candidate serves each kind of prediction.

Why: the bootstrap champion is trained on a simulated fleet. On a real fleet it can be worse than the pattern
cascade it re-prices (cars left charging, chargers faster or slower than any simulated one), and far ahead any
detailed predictor can lose to the last level carried forward, because the bookings that will be made in between
are unknown. Nothing served may be worse on this fleet than its simplest candidate, and the service cannot know
which is best without trying: so it tries all of them on every prediction, in the shadow.

Candidates: `model` (the champion's Monte Carlo over the schedule, when one serves), `pattern` (the per-car EMA
physics walk the model re-prices), `persistence` (the level the walk started from, carried forward), and `median`
(the median of those that ran; of two, their mean). A kind is the
lead time (hours from the present to the pick-up), whether the booking is the request's own or one re-predicted in
a cascade, and whether the car was last known charging, parked unplugged, or unknown, with the last two split at
LOW_LEVEL (a car left low is where a fleet's staff recharge cars, or do not).

When a booking is picked up, each of its predictions not yet scored adds, per kind, each candidate's absolute
error (averaged over that booking's predictions of the kind: they err together) to an exponentially weighted MAE.
Only outcomes already observed move the scores, and a prediction is served by what was learned before it was made.
Every kind is served by its default (the model when one serves, else the pattern cascade) until the fleet has
scored MIN_BOOKINGS bookings with it (a new champion's trial). Then each candidate's MAE on the kind is estimated
by partial pooling: its lead time's record shrunk towards the fleet's, then the kind's own record shrunk towards
that, each level's (decayed) bookings weighed against POOLING bookings of the coarser estimate. The candidate with
the best estimate serves when it beats the default's by SWITCH_MARGIN.

Why pooling: a kind can be rare and decisive at once. On a world without staff recharges (bench/worlds.py, seed
11) a car parked low and picked up within 6 hours was priced 25 points off by a champion that expects staff, and
1 point off by the pattern cascade; with 22 such bookings in a month the kind never had enough to decide alone, so
its lead time's record (where the champion was about as good as the pattern) kept the champion serving. Pooling
lets a few bookings of a kind count in proportion to what they show.

DECAY, MIN_BOOKINGS and SWITCH_MARGIN were set by reasoning, not tuned on any benchmark world: a memory of about a
hundred bookings per kind (a fleet's habits change over weeks), a first decision after a few dozen, and a margin
that keeps two near-equal candidates from trading places on noise. POOLING was chosen on the tuning seed 11 (never
the reported seed 7), among 2, 3, 5, 8, 10, 20 and 30, by replaying the stored predictions of seven worlds offline
under each (`bench.shadow_replay`, docs/models.md). Summed over the seven, the latest MAE was 22.47 before pooling
and 20.0 at weights 2 to 5 (20.6 at 20 and 30); at creation 74.29 before, 72.6 to 73.0 at 2 to 5. 5 is inside that
plateau. Per world the best weight differs: a charge-limited fleet's rare kinds are noisy, and at 5 four or five of
their bookings switched them to a candidate that then did worse (latest 3.33 before pooling, 3.72 at 5).
The coarser levels are poor priors for a kind: they mix own bookings with cascades, cars charging with parked
ones, whose errors differ tenfold, so a handful of the kind's own bookings should outweigh them.
"""

from __future__ import annotations

import json
import math
import statistics
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache

from django.conf import settings
from django.db import connection, transaction

from common.process_cache import forget, kept_or_computed
from common.rows import insert_missing, parameter_rows
from predictions.calibration import lead_time_label
from predictions.models import PredictorScore

CANDIDATES = ("model", "pattern", "persistence", "median")
DECAY = 0.99
MIN_BOOKINGS = 30
POOLING = 5.0  # bookings' worth of the coarser level's estimate that a finer level's own record is weighed against
SWITCH_MARGIN = 0.05
SCORES_CACHE_KEY = "predictions:shadow_scores"
# A car left unplugged (or in an unknown state) below this level is a kind of its own: that is where a fleet's
# staff recharge cars, or do not, and a champion trained where staff always come is far off on a fleet where they
# never do, while it is right for the same fleet's other parked cars. 25 % is the fleet readiness rule's default
# (READINESS_MIN_LEVEL, Getaround's minimum at pick-up): the level below which an operator acts on a car. Set by
# that reasoning; 20 and 30 were replayed offline on the tuning seed 11 only to see that the gain does not hang on it.
LOW_LEVEL = 25.0


def shadow_kind(
    *, own: bool, present: datetime, target: datetime, charging: bool | None, level: float | None = None
) -> str:
    """The kind of a prediction for shadow scoring: lead time, own booking or cascade, the car's last known state,
    and for a car not known to be charging, whether its last known `level` was below LOW_LEVEL (`parked-low`,
    `unknown-low`).

    Empty (never scored) when the target is not after the present: a prediction for a moment already reached
    (a late pick-up answered from the level just reported) would score persistence as perfect.
    """
    if target <= present:
        return ""
    lead = lead_time_label(present=present, target=target)
    state = "unknown" if charging is None else ("charging" if charging else "parked")
    if not charging and level is not None and level < LOW_LEVEL:
        state += "-low"
    return f"{lead}|{'own' if own else 'cascade'}|{state}"


@dataclass(frozen=True)
class Score:
    mae: float
    bookings: int  # scored bookings, undecayed
    weight: float  # the decayed number of them: how much the (decayed) MAE rests on


def shadow_scores() -> dict[tuple[str, str], Score]:
    """Every (kind, candidate)'s score, in one query, read as tuples: model instances of its hundred-odd rows took
    1 ms (0.4 as tuples), about 3 % of a pick-up's event, which reloads them."""
    rows = PredictorScore.objects.filter(weight__gt=0).values_list(
        "kind", "candidate", "sum_abs_error", "bookings", "weight"
    )
    return {
        (kind, candidate): Score(mae=error / weight, bookings=bookings, weight=weight)
        for kind, candidate, error, bookings, weight in rows
    }


def shadow_scores_cached() -> dict[tuple[str, str], Score]:
    """`shadow_scores()`, kept for CALIBRATION_CACHE_SECONDS per process; a process that learns forgets its copy."""
    ttl = settings.CALIBRATION_CACHE_SECONDS
    if ttl <= 0:
        return shadow_scores()
    return kept_or_computed(SCORES_CACHE_KEY, shadow_scores, ttl)


def kind_levels(kind: str) -> tuple[str, ...]:
    """A kind and the coarser kinds it belongs to: `6-24h|own|parked-low`, then `6-24h`, then `*` (every prediction).

    A fine kind may see few bookings (a car left charging, booked three days ahead, is rare); its estimate then
    leans on its lead time's record and the whole fleet's (`pooled_mae`), rather than on a handful of outcomes.
    A coarse kind (`6-24h`, `*`) lists each level once.
    """
    return tuple(dict.fromkeys((kind, kind.split("|", 1)[0], "*")))


def pooled_mae(
    scores: dict[tuple[str, str], Score], *, kind: str, candidate: str, pooling: float = POOLING
) -> float | None:
    """The candidate's MAE on `kind` by partial pooling: from the fleet's record (`*`) to the kind's own, each level's
    record weighed (its decayed bookings) against `pooling` bookings of the coarser level's estimate.

    A level the candidate has no record at leaves the estimate as it is; with no record at all, None.
    """
    estimate = None
    for level in reversed(kind_levels(kind)):
        if (s := scores.get((level, candidate))) is None:
            continue
        estimate = s.mae if estimate is None else (s.weight * s.mae + pooling * estimate) / (s.weight + pooling)
    return estimate


def candidate_serving(
    scores: dict[tuple[str, str], Score],
    *,
    kind: str,
    available: Iterable[str],
    default: str,
    pooling: float = POOLING,
) -> str:
    """Which candidate serves `kind`: the default, unless another's pooled MAE (`pooled_mae`) beats it by
    SWITCH_MARGIN.

    Only candidates the fleet has scored on MIN_BOOKINGS bookings take part; until the default has been (a new
    champion), it serves every kind for that trial. (`pooling` is a parameter for bench.shadow_replay, which
    compares weights offline.)
    """
    seasoned = [c for c in available if (s := scores.get(("*", c))) is not None and s.bookings >= MIN_BOOKINGS]
    if default not in seasoned:
        return default
    estimates = {
        c: e for c in seasoned if (e := pooled_mae(scores, kind=kind, candidate=c, pooling=pooling)) is not None
    }
    best = min(estimates, key=estimates.__getitem__)
    return best if estimates[best] < estimates[default] * (1 - SWITCH_MARGIN) else default


# The prediction columns `shadow_learn` scores, in the order it takes them. The median is derived from the three
# levels (`candidate_levels`), not stored.
SCORED_COLUMNS = ("shadow_kind", "model_level", "pattern_level", "persistence_level")


def candidate_levels(model: float | None, pattern: float | None, persistence: float | None) -> dict[str, float]:
    """Every candidate's level from the three a prediction records: those that ran, and their median.

    Why a median: where the candidates disagree, each is wrong in its own way (the champion about what its
    simulator never showed it, the pattern cascade about a renter's habits it has seen a few times, persistence
    about everything that happens before the pick-up), and the middle one of three is often nearer than any one
    of them served alone. Its record decides, like any candidate's, where it serves. On the tuning seed 11 it
    lowered the summed MAE of seven worlds in the offline replay (docs/models.md); of two levels (no champion)
    it is their mean.
    """
    stored = {"model": model, "pattern": pattern, "persistence": persistence}
    ran = {c: level for c, level in stored.items() if level is not None}
    if ran:
        ran["median"] = statistics.median(ran.values())
    return ran


def shadow_learn(*, scored: Iterable[tuple[str, float | None, float | None, float | None]], actual: float, at) -> None:
    """Add a picked-up booking's errors to every (kind, candidate) that predicted it, at every level of its kinds.

    `scored` holds each prediction's (kind, model level, pattern level, persistence level); a level is None when
    that candidate did not run, and a prediction without a kind is not scored. One booking counts once per
    (kind, candidate): its predictions of one kind err together, so their errors are averaged.

    The scores are written after the event commits, in a short transaction of their own: the coarse rows (a
    lead time, `*`) are shared by every car, and holding their locks through the rest of an event would
    serialize the fleet's pick-ups. The rows are locked in key order first, so two such writes cannot deadlock.
    Scores are statistics: a write lost to a crash between the commit and it costs one booking's evidence.
    """
    added = booking_errors(scored, actual)
    if added:
        transaction.on_commit(lambda: _scores_add(added, at), robust=True)


def booking_errors(
    scored: Iterable[tuple[str, float | None, float | None, float | None]], actual: float
) -> dict[tuple[str, str], float]:
    """One picked-up booking's error per (kind level, candidate), averaged over its predictions of that kind.

    `scored` as `shadow_learn` takes it; a prediction without a kind, or a candidate that did not run, adds nothing.
    """
    errors: dict[tuple[str, str], list[float]] = defaultdict(list)
    for kind, model, pattern, persistence in scored:
        if not kind:
            continue
        for candidate, level in candidate_levels(model, pattern, persistence).items():
            error = abs(actual - level)
            if not math.isfinite(error):  # no evidence, and no row could store it
                continue
            for key in kind_levels(kind):
                errors[(key, candidate)].append(error)
    return {key: sum(values) / len(values) for key, values in errors.items()}


class _ScoresMissing(Exception):
    """Some (kind, candidate) row to add to does not exist yet: `_scores_add` creates them first."""


def _scores_add(added: dict[tuple[str, str], float], at) -> None:
    """The rows locked in key order and moved in one update; when one is missing, that is undone and done again
    after one insert of the missing rows.

    A booking's predictions span many kinds, so this is often a hundred (kind, candidate) rows: on Postgres the keys
    and errors go as one JSON parameter (statements of one shape whatever the count, which psycopg parses once and
    the server plans quickly), elsewhere as parameter lists built once per count. The rows exist after a fleet's
    first pick-ups of each kind (only a promotion deletes some), so the insert, which comes before any lock so
    that two writers cannot deadlock, is left out until a row is found missing.
    """
    keys = sorted(added)
    try:
        _scores_write(added, keys, at, create=False)
    except _ScoresMissing:
        _scores_write(added, keys, at, create=True)
    forget(SCORES_CACHE_KEY)


def _scores_write(added: dict[tuple[str, str], float], keys: list[tuple[str, str]], at, *, create: bool) -> None:
    """Move the rows of `keys` by `added`; raise `_ScoresMissing` (undoing it) if one is missing and not `create`d."""
    when = connection.ops.adapt_datetimefield_value(at)
    with transaction.atomic():
        if create:
            insert_missing(PredictorScore, [PredictorScore(kind=k, candidate=c) for k, c in keys])
        with connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                document = json.dumps([{"k": k, "c": c, "e": added[(k, c)]} for k, c in keys])
                cursor.execute(_scores_locked_json_sql(), [document])
                if len(cursor.fetchall()) < len(keys) and not create:
                    raise _ScoresMissing
                cursor.execute(_scores_moved_json_sql(), [DECAY, DECAY, when, document])
            else:  # SQLite's one writer needs no row locks
                moved = [value for key in keys for value in (*key, added[key])]
                cursor.execute(_scores_moved_sql(len(keys)), [DECAY, DECAY, when, *moved])
                if cursor.rowcount < len(keys) and not create:
                    raise _ScoresMissing


@lru_cache(maxsize=1)
def _scores_locked_json_sql() -> str:
    """Lock the (kind, candidate) rows of a JSON array of {k, c} in key order (Postgres)."""
    qn = connection.ops.quote_name
    kind, candidate = qn("kind"), qn("candidate")
    return (
        f"SELECT {qn('id')} FROM {qn(PredictorScore._meta.db_table)} WHERE ({kind}, {candidate}) IN "
        f"(SELECT x.k, x.c FROM json_to_recordset(%s::json) AS x(k text, c text)) "
        f"ORDER BY {kind}, {candidate} FOR UPDATE"
    )


@lru_cache(maxsize=1)
def _scores_moved_json_sql() -> str:
    """`_scores_moved_sql` with the rows' errors from a JSON array of {k, c, e} (Postgres)."""
    return _scores_update_sql("json_to_recordset(%s::json) AS s(k text, c text, e double precision)")


@lru_cache(maxsize=32)
def _scores_moved_sql(count: int) -> str:
    """Decay `count` rows and add each its own error, in one UPDATE of the rows' own columns, built once per count."""
    return _scores_update_sql(f"({parameter_rows(('k', 'c', 'e'), count)}) AS s")


def _scores_update_sql(source: str) -> str:
    """Decay the rows named in `source` (a derived table `s` of k, c, e) and add each its own error."""
    qn = connection.ops.quote_name
    table = qn(PredictorScore._meta.db_table)
    weight, error, bookings = qn("weight"), qn("sum_abs_error"), qn("bookings")
    return (
        f"UPDATE {table} SET {weight} = {weight} * %s + 1.0, {error} = {error} * %s + s.e, "
        f"{bookings} = {bookings} + 1, {qn('updated_at')} = %s "
        f"FROM {source} WHERE {table}.{qn('kind')} = s.k AND {table}.{qn('candidate')} = s.c"
    )


def shadow_forget_model() -> int:
    """A new champion is promoted: forget the `model` candidate's scores, which were its predecessor's.

    The new champion then serves every kind for its trial (MIN_BOOKINGS), and its own scores decide.
    """
    forget(SCORES_CACHE_KEY)
    deleted, _ = PredictorScore.objects.filter(candidate="model").delete()
    return deleted


def shadow_report(*, model_available: bool) -> list[dict]:
    """Per kind: each candidate's score and what serves that kind now (for model info and the models page)."""
    scores = shadow_scores()
    default = "model" if model_available else "pattern"
    available = CANDIDATES if model_available else CANDIDATES[1:]
    kinds = sorted({kind for kind, _ in scores}, key=lambda k: (k == "*", "|" not in k, k))
    return [
        {
            "kind": kind,
            "serving": candidate_serving(scores, kind=kind, available=available, default=default),
            "candidates": {
                c: {
                    "mae": round(s.mae, 3),
                    "pooled_mae": round(pooled_mae(scores, kind=kind, candidate=c), 3),
                    "bookings": s.bookings,
                }
                for c in CANDIDATES
                if (s := scores.get((kind, c))) is not None
            },
        }
        for kind in kinds
    ]
