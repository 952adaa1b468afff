"""Shadow scoring's serving rule, replayed offline on the predictions a world replay stored.

    .venv/bin/python -m bench.worlds --worlds default,no_staff --seed 11 --keep /tmp/kept
    .venv/bin/python -m bench.shadow_replay /tmp/kept/default-model /tmp/kept/no_staff-model --pooling 2,5,10,30

Why: every stored prediction records each candidate's level (`model_level`, `pattern_level`,
`persistence_level`) and its shadow kind, and no candidate's level depends on which one served. So the
scores a rule would have learned, and what it would have served, can be recomputed from one replay for any
rule, in seconds instead of a replay per constant. This is how `predictions.shadow.POOLING` was chosen on
the tuning seed (never the reported one), and how the median candidate was tried.

For each kept service directory (a `bench.worlds --keep` replay with the champion serving) it:
1. reads every scored prediction with a shadow kind, and the moment its booking's pick-up was received;
2. walks them in the order the service saw them: a prediction is served by the rule on the scores learned
   so far; a pick-up adds each candidate's error to every level of each kind that predicted it, as
   `predictions.shadow.shadow_learn` does (one booking counts once per kind, errors averaged, decay);
3. prints the MAE at creation (each booking's first prediction) and latest before pick-up (its last),
   after the warm-up, for: what was stored, the rule before pooling (the finest level where the default
   had MIN_BOOKINGS bookings decided alone), and partial pooling at each `--pooling` weight, with and without
   the median candidate (`predictions.shadow.candidate_levels`, derived from the three stored levels).

Scores here are learnt at once, not after a cache's seconds, and the latest prediction is the last scored
one (the world suite also counts a prediction made at the pick-up itself), so figures differ from the
suite's by a few hundredths; the comparison between rules is what this is for.
"""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from bench.common import django_setup, parser_for, text_table

django_setup({"DJANGO_SETTINGS_MODULE": "batterypred.settings"})  # the serving rule's module imports its model

from predictions.shadow import (  # noqa: E402
    CANDIDATES,
    DECAY,
    MIN_BOOKINGS,
    SWITCH_MARGIN,
    Score,
    booking_errors,
    candidate_levels,
    candidate_serving,
    kind_levels,
)

WARMUP_DAYS = 14.0
Scores = dict[tuple[str, str], Score]
Rule = Callable[[Scores, str], str]


@dataclass(frozen=True)
class Stored:
    """One scored prediction, as the service stored it."""

    id: int
    booking: str
    predicted_at: str  # the server's clock, in the order the replay sent its stream
    kind: str
    levels: tuple[float | None, float | None, float | None]  # model, pattern, persistence
    served_by: str
    actual: float
    scored_at: str  # when the service received the booking's pick-up (the server's clock)
    picked_up: str  # the pick-up in the stream's time (for the warm-up)


QUERY = """
SELECT p.id, p.booking_external_id, p.predicted_at, p.shadow_kind, p.model_level, p.pattern_level,
       p.persistence_level, p.served_by, p.actual_battery, e.received_at, b.actual_start
FROM predictions_prediction p
JOIN bookings_booking b ON b.external_id = p.booking_external_id
JOIN bookings_inboundevent e ON e.booking_external_id = p.booking_external_id AND e.event_type = 'booking.started'
WHERE p.actual_battery IS NOT NULL AND p.shadow_kind != '' AND b.actual_start IS NOT NULL
"""


def stored_predictions(directory: Path) -> list[Stored]:
    with sqlite3.connect(directory / "bench.sqlite3") as db:
        return [
            Stored(row[0], row[1], row[2], row[3], (row[4], row[5], row[6]), row[7], row[8], row[9], row[10])
            for row in db.execute(QUERY)
        ]


THREE = CANDIDATES[:3]  # the candidates before the median joined them


def finest_level_rule(scores: Scores, kind: str) -> str:
    """The rule before partial pooling: the finest level where the default had MIN_BOOKINGS bookings decided alone
    (among the three candidates it had)."""
    for level in kind_levels(kind):
        scored = {c: s for c in THREE if (s := scores.get((level, c))) is not None and s.bookings >= MIN_BOOKINGS}
        if "model" not in scored:
            continue
        best = min(scored, key=lambda c: scored[c].mae)
        return best if scored[best].mae < scored["model"].mae * (1 - SWITCH_MARGIN) else "model"
    return "model"


def pooling_rule(weight: float, available: tuple[str, ...] = CANDIDATES) -> Rule:
    return lambda scores, kind: candidate_serving(
        scores, kind=kind, available=available, default="model", pooling=weight
    )


def served_by_rule(predictions: list[Stored], rule: Rule) -> dict[int, str]:
    """What `rule` serves each prediction with, on the scores learned from the pick-ups received before it."""
    by_booking: dict[str, list[Stored]] = defaultdict(list)
    for p in predictions:
        by_booking[p.booking].append(p)
    events = [(p.predicted_at, 1, p.id, p) for p in predictions]
    events += [(ps[0].scored_at, 0, 0, booking) for booking, ps in by_booking.items()]
    events.sort(key=lambda e: e[:3])
    sums: dict[tuple[str, str], list[float]] = {}  # decayed error, decayed weight, bookings
    scores: Scores = {}
    served = {}
    for _, is_prediction, _, item in events:
        if is_prediction:
            served[item.id] = rule(scores, item.kind)
            continue
        picked = by_booking[item]
        scored = [(p.kind, *p.levels) for p in picked if p.predicted_at < p.scored_at]
        for key, error in booking_errors(scored, picked[0].actual).items():
            s = sums.setdefault(key, [0.0, 0.0, 0])
            s[0], s[1], s[2] = s[0] * DECAY + error, s[1] * DECAY + 1.0, s[2] + 1
            scores[key] = Score(mae=s[0] / s[1], bookings=s[2], weight=s[1])
    return served


def moment_maes(
    predictions: list[Stored], served: dict[int, str], warmup_days: float = WARMUP_DAYS
) -> dict[str, float]:
    """MAE of the served level at creation and latest before pick-up, over pick-ups after the warm-up."""
    start = min(p.picked_up for p in predictions)
    warm = (datetime.fromisoformat(start[:10]) + timedelta(days=warmup_days)).isoformat(sep=" ")
    first: dict[str, Stored] = {}
    last: dict[str, Stored] = {}
    for p in predictions:
        if p.picked_up < warm or p.predicted_at >= p.scored_at:
            continue
        if p.booking not in first or (p.predicted_at, p.id) < (first[p.booking].predicted_at, first[p.booking].id):
            first[p.booking] = p
        if p.booking not in last or (p.predicted_at, p.id) > (last[p.booking].predicted_at, last[p.booking].id):
            last[p.booking] = p

    def mae(table: dict[str, Stored]) -> float:
        errors = [abs(p.actual - candidate_levels(*p.levels)[served[p.id]]) for p in table.values()]
        return sum(errors) / len(errors)

    return {"creation": mae(first), "latest": mae(last), "n": len(first)}


def main(argv: list[str] | None = None) -> None:
    parser = parser_for(__doc__)
    parser.add_argument("directories", type=Path, nargs="+", help="service directories kept by bench.worlds --keep")
    parser.add_argument("--pooling", default="2,3,5,8,10,20,30", help="comma-separated pooling weights to compare")
    parser.add_argument("--warmup-days", type=float, default=WARMUP_DAYS, help="as the replay's (7 for --quick)")
    args = parser.parse_args(argv)
    weights = [float(w) for w in args.pooling.split(",")]
    rules: dict[str, Rule] = {"before pooling": finest_level_rule}
    rules |= {f"pooling {w:g}, no median": pooling_rule(w, THREE) for w in weights}
    rules |= {f"pooling {w:g}": pooling_rule(w) for w in weights}
    rows = [["replay", "n", "rule", "creation MAE", "latest MAE"]]
    for directory in args.directories:
        predictions = stored_predictions(directory)
        warmup = args.warmup_days
        results = {"stored": moment_maes(predictions, {p.id: p.served_by for p in predictions}, warmup)}
        results |= {
            name: moment_maes(predictions, served_by_rule(predictions, rule), warmup) for name, rule in rules.items()
        }
        for name, m in results.items():
            rows.append([directory.name, str(m["n"]), name, f"{m['creation']:.2f}", f"{m['latest']:.2f}"])
    print(text_table(rows, left=(0, 2)))


if __name__ == "__main__":
    main()
