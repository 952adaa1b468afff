"""Accuracy of the predictions Laravel showed, scored against the level at pick-up.

What is scored is each completed booking's *current* prediction: the latest one before pick-up,
the one the renter saw (the same rule as the daily `AccuracyMetric` sums). Every figure is an SQL
aggregate over those rows, so a page costs a handful of queries whatever the range; the partial
index `prediction_scored_by_start` keeps the range scan to the scored rows.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta

from django.db import connection, transaction
from django.db.models import (
    Case,
    Count,
    DurationField,
    ExpressionWrapper,
    F,
    FloatField,
    IntegerField,
    Q,
    QuerySet,
    Sum,
    Value,
    When,
)
from django.db.models.functions import Abs, Floor, Greatest, Least, TruncDate
from django.utils import timezone

from bookings.models import Vehicle
from predictions.models import Prediction

PROMISED_COVERAGE = 0.95
# Horizon = pick-up time minus the moment of the scored prediction.
HORIZONS: tuple[tuple[str, timedelta | None], ...] = (
    ("under 6 h", timedelta(hours=6)),
    ("6 to 24 h", timedelta(hours=24)),
    ("over 24 h", None),
)
HISTOGRAM_BIN_POINTS = 2
HISTOGRAM_HALF_BINS = 15  # errors beyond ±30 points fall into the two end bins
WORST_LIMIT = 10
WORST_MIN_BOOKINGS = 3  # one unlucky booking does not make a car "worst"
READINESS_BINS = 10  # reliability bins of probability_ready: 0-10 %, ..., 90-100 %


@dataclass(frozen=True)
class AccuracyFilter:
    start: date
    end: date  # inclusive
    vehicle: Vehicle | None = None

    @property
    def start_at(self) -> datetime:
        return datetime.combine(self.start, time.min, tzinfo=timezone.get_current_timezone())

    @property
    def end_before(self) -> datetime:
        return datetime.combine(self.end + timedelta(days=1), time.min, tzinfo=timezone.get_current_timezone())


SUM_KEYS = ("n", "abs", "sq", "err", "w10", "covered", "width", "r_n", "r_p", "r_ready", "r_brier")


@dataclass(frozen=True)
class Figures:
    count: int
    mae: float | None
    rmse: float | None
    bias: float | None
    within_10: float | None
    coverage: float | None
    mean_width: float | None

    @classmethod
    def from_sums(cls, sums: dict) -> Figures:
        """Figures from running sums (see `_sum_aggregates`); sums of several groups simply add up."""
        n = sums.get("n") or 0

        def mean(key: str) -> float | None:
            return sums[key] / n if n else None

        return cls(
            count=n,
            mae=mean("abs"),
            rmse=math.sqrt(sums["sq"] / n) if n else None,
            bias=mean("err"),
            within_10=mean("w10"),
            coverage=mean("covered"),
            mean_width=mean("width"),
        )

    @property
    def coverage_gap(self) -> float | None:
        """Coverage minus the promised 95 %: negative means the intervals are too narrow."""
        return None if self.coverage is None else self.coverage - PROMISED_COVERAGE


@dataclass(frozen=True)
class ReliabilityBin:
    low: int  # percent
    high: int
    count: int
    mean_probability: float | None
    observed: float | None  # share of these pick-ups that had the required level

    @property
    def label(self) -> str:
        return f"{self.low}\u2013{self.high} %"

    @property
    def gap(self) -> float | None:
        """Observed minus promised: negative means readiness was over-confident in this bin."""
        return None if self.count == 0 else self.observed - self.mean_probability


@dataclass
class ReadinessReport:
    """How well `probability_ready` was calibrated on the scored pick-ups that carry it.

    `base_rate` is the share of those pick-ups that were ready; `baseline_brier` is the Brier score of always
    saying that share, the bar a useful probability must beat (lower is better).
    """

    count: int
    ready: int
    brier: float | None
    baseline_brier: float | None
    ece: float | None
    bins: list[ReliabilityBin]
    daily: list[dict]

    @property
    def base_rate(self) -> float | None:
        return self.ready / self.count if self.count else None


@dataclass
class AccuracyReport:
    filter: AccuracyFilter
    overall: Figures
    by_horizon: list[tuple[str, Figures]]
    by_model: list[tuple[str, Figures]]
    daily: list[dict]
    histogram: list[dict]
    worst_cars: list[dict]
    worst_renters: list[dict]
    readiness: ReadinessReport | None = None
    chart: dict = field(default_factory=dict)


def scored_predictions(f: AccuracyFilter) -> QuerySet[Prediction]:
    """The current predictions of the bookings picked up in the range, with their actual level."""
    qs = Prediction.objects.filter(
        is_current=True,
        actual_battery__isnull=False,
        booking_start_time__gte=f.start_at,
        booking_start_time__lt=f.end_before,
    )
    if f.vehicle is not None:
        qs = qs.filter(vehicle=f.vehicle)
    return qs


def _within(points: int) -> Count:
    return Count("prediction_error", filter=Q(prediction_error__gte=-points, prediction_error__lte=points))


def _sum_aggregates() -> dict:
    """Sums, not averages, so the groups of one scan add up to every coarser figure the page shows."""
    error = F("prediction_error")
    return {
        "n": Count("*"),
        "abs": Sum(Abs(error)),
        "sq": Sum(error * error),
        "err": Sum(error),
        "w10": _within(10),
        "covered": Count(
            "prediction_error",
            filter=Q(actual_battery__gte=F("confidence_lower"), actual_battery__lte=F("confidence_upper")),
        ),
        "width": Sum(F("confidence_upper") - F("confidence_lower")),
    }


def _readiness_known() -> Q:
    """Scored rows whose prediction carried readiness; those stored before it existed have nulls."""
    return Q(probability_ready__isnull=False, required_level__isnull=False)


def _readiness_columns() -> dict:
    """Per row: `ready` (1 when the actual level reached the required one, 0 when not), `p_ready` (the
    probability promised) and `rbin` (its reliability bin, 0..9); all null without readiness, so the sums
    below skip those rows by themselves (SQL aggregates ignore nulls)."""
    known = _readiness_known()
    return {
        "ready": Case(
            When(known & Q(actual_battery__gte=F("required_level")), then=Value(1)),
            When(known, then=Value(0)),
            default=None,
            output_field=IntegerField(),
        ),
        "p_ready": Case(When(known, then=F("probability_ready")), default=None, output_field=FloatField()),
        "rbin": Case(
            When(
                known,
                then=Least(Floor(F("probability_ready") * READINESS_BINS), Value(READINESS_BINS - 1)),
            ),
            default=None,
            output_field=IntegerField(),
        ),
    }


def _readiness_aggregates() -> dict:
    """Sums over the `_readiness_columns`: count, promised probability, ready pick-ups, squared Brier error."""
    miss = F("p_ready") - F("ready")
    return {
        "r_n": Count("ready"),
        "r_p": Sum("p_ready"),
        "r_ready": Sum("ready"),
        "r_brier": Sum(ExpressionWrapper(miss * miss, output_field=FloatField())),
    }


def _horizon_bucket() -> tuple[Case, ExpressionWrapper]:
    """A 0-based horizon bucket (see `HORIZONS`) and the lead-time expression it compares."""
    lead = ExpressionWrapper(F("booking_start_time") - F("predicted_at"), output_field=DurationField())
    whens = [When(Q(lead__lt=limit), then=Value(i)) for i, (_, limit) in enumerate(HORIZONS) if limit is not None]
    return Case(*whens, default=Value(len(HORIZONS) - 1), output_field=IntegerField()), lead


def accuracy_groups(qs: QuerySet[Prediction]) -> list[dict]:
    """One scan: sums per pick-up day, model version and horizon bucket (a few thousand rows for a year)."""
    bucket, lead = _horizon_bucket()
    readiness = _readiness_columns()
    del readiness["rbin"]
    return list(
        qs.annotate(day=TruncDate("booking_start_time"), lead=lead, bucket=bucket, **readiness)
        .values("day", "model_version", "bucket")
        .annotate(**_sum_aggregates(), **_readiness_aggregates())
        .order_by()
    )


def _add(groups: list[dict], key) -> dict:
    """Sum the groups by `key(group)`, keeping first-seen order."""
    totals: dict = {}
    for g in groups:
        total = totals.setdefault(key(g), dict.fromkeys(SUM_KEYS, 0))
        for k in SUM_KEYS:
            total[k] += g[k] or 0
    return totals


def accuracy_by_horizon(groups: list[dict]) -> list[tuple[str, Figures]]:
    sums = _add(groups, lambda g: g["bucket"])
    return [(label, Figures.from_sums(sums.get(i, {}))) for i, (label, _) in enumerate(HORIZONS)]


def accuracy_by_model(groups: list[dict]) -> list[tuple[str, Figures]]:
    sums = _add(groups, lambda g: g["model_version"])
    return [(version, Figures.from_sums(sums[version])) for version in sorted(sums)]


def accuracy_daily(groups: list[dict]) -> list[dict]:
    """One row per pick-up day and model version: MAE, share within 10 and coverage."""
    sums = _add(groups, lambda g: (g["day"], g["model_version"]))
    rows = []
    for day, version in sorted(sums):
        f = Figures.from_sums(sums[(day, version)])
        rows.append(
            {
                "day": day,
                "model_version": version,
                "count": f.count,
                "mae": f.mae,
                "within_10": f.within_10,
                "coverage": f.coverage,
            }
        )
    return rows


def _bin_expr() -> Least:
    half = HISTOGRAM_HALF_BINS
    return Least(
        Greatest(Floor(F("prediction_error") / HISTOGRAM_BIN_POINTS), Value(-half)),
        Value(half - 1),
        output_field=IntegerField(),
    )


def error_histogram(bins: dict[int, int]) -> list[dict]:
    """Counts of (actual - predicted) in bins of 2 points; the two end bins hold everything beyond ±30."""
    half = HISTOGRAM_HALF_BINS
    rows = []
    for b in range(-half, half):
        low = b * HISTOGRAM_BIN_POINTS
        label = f"{low:+d}..{low + HISTOGRAM_BIN_POINTS:+d}"
        if b == -half:
            label = f"< {low + HISTOGRAM_BIN_POINTS:+d}"
        elif b == half - 1:
            label = f">= {low:+d}"
        rows.append({"bin": b, "low": low, "label": label, "count": bins.get(b, 0)})
    return rows


def _worst(sums: dict, names: dict | None = None) -> list[dict]:
    """The keys with the largest MAE among those with enough scored bookings (ties by name)."""
    rows = []
    for key, total in sums.items():
        if total["n"] >= WORST_MIN_BOOKINGS:
            name = names[key] if names is not None else key
            rows.append(
                {"key": name, "count": total["n"], "mae": total["abs"] / total["n"], "bias": total["err"] / total["n"]}
            )
    rows.sort(key=lambda r: (-r["mae"], r["key"]))
    return rows[:WORST_LIMIT]


@dataclass
class _Scan:
    """Sums of the scored predictions grouped four ways; every figure of the page is built from these."""

    groups: list[dict]  # per (day, model_version, bucket)
    bins: dict[int, int]  # histogram bin -> count
    cars: dict[int, dict]  # vehicle pk -> sums
    renters: dict[str, dict]  # user_id -> sums
    reliability: dict[int, dict] = field(default_factory=dict)  # readiness bin -> r_n, r_p, r_ready sums


def _scan_portable(qs: QuerySet[Prediction]) -> _Scan:
    """Five GROUP BY queries: any database."""
    bins = {int(r["bin"]): r["n"] for r in qs.annotate(bin=_bin_expr()).values("bin").annotate(n=Count("*")).order_by()}
    cars = {r["vehicle_id"]: r for r in qs.values("vehicle_id").annotate(**_sum_aggregates()).order_by()}
    renters = {
        r["user_id"]: r for r in qs.exclude(user_id="").values("user_id").annotate(**_sum_aggregates()).order_by()
    }
    reliability = {
        int(r["rbin"]): r
        for r in qs.filter(_readiness_known())
        .annotate(**_readiness_columns())
        .values("rbin")
        .annotate(**_readiness_aggregates())
        .order_by()
    }
    return _Scan(groups=accuracy_groups(qs), bins=bins, cars=cars, renters=renters, reliability=reliability)


GROUPING_SETS_SQL = """
SELECT GROUPING(day, model_version, bucket) AS not_main, GROUPING(bin) AS not_bin,
       GROUPING(vehicle_id) AS not_car, GROUPING(user_id) AS not_renter,
       day, model_version, bucket, bin, vehicle_id, user_id, rbin,
       COUNT(*) AS n,
       SUM(ABS(prediction_error)) AS abs,
       SUM(prediction_error * prediction_error) AS sq,
       SUM(prediction_error) AS err,
       COUNT(*) FILTER (WHERE prediction_error BETWEEN -10 AND 10) AS w10,
       COUNT(*) FILTER (WHERE actual_battery BETWEEN confidence_lower AND confidence_upper) AS covered,
       SUM(confidence_upper - confidence_lower) AS width,
       COUNT(ready) AS r_n,
       SUM(p_ready) AS r_p,
       SUM(ready) AS r_ready,
       SUM((p_ready - ready) * (p_ready - ready)) AS r_brier
FROM ({inner}) AS scored
GROUP BY GROUPING SETS ((day, model_version, bucket), (bin), (vehicle_id), (user_id), (rbin))
"""


def _scan_grouping_sets(qs: QuerySet[Prediction]) -> _Scan:
    """The same sums in one pass over the rows (Postgres GROUPING SETS): a year is read once, not four times.

    The inner query is the ORM's (same filters, same day, horizon and bin expressions as the portable
    path), so the two paths cannot drift apart; `tests/dashboard` checks they agree.
    """
    bucket, lead = _horizon_bucket()
    inner = (
        qs.annotate(
            day=TruncDate("booking_start_time"), lead=lead, bucket=bucket, bin=_bin_expr(), **_readiness_columns()
        )
        .values(
            "day",
            "model_version",
            "bucket",
            "bin",
            "vehicle_id",
            "user_id",
            "prediction_error",
            "actual_battery",
            "confidence_lower",
            "confidence_upper",
            "ready",
            "p_ready",
            "rbin",
        )
        .order_by()
    )  # the model's default ordering would sort a year of rows for nothing
    sql, params = inner.query.sql_with_params()
    scan = _Scan(groups=[], bins={}, cars={}, renters={})
    with connection.cursor() as cursor:
        cursor.execute(GROUPING_SETS_SQL.format(inner=sql), params)
        columns = [c.name for c in cursor.description]
        for values in cursor.fetchall():
            row = dict(zip(columns, values, strict=True))
            if not row["not_main"]:
                scan.groups.append(row)
            elif not row["not_bin"]:
                scan.bins[int(row["bin"])] = row["n"]
            elif not row["not_car"]:
                scan.cars[row["vehicle_id"]] = row
            elif not row["not_renter"]:
                if row["user_id"]:
                    scan.renters[row["user_id"]] = row
            elif row["rbin"] is not None:  # the (rbin) set's null group holds the rows without readiness
                scan.reliability[int(row["rbin"])] = row
    return scan


def readiness_report(groups: list[dict], reliability: dict[int, dict]) -> ReadinessReport:
    """Reliability bins, daily Brier score beside the base-rate baseline, and the expected calibration error.

    The baseline always says the range's share of ready pick-ups `s`; on a day with `k` ready of `n`, its
    mean of (s - ready)^2 is s^2 - 2 s k/n + k/n (ready is 0 or 1), so it comes from the same sums.
    """
    per_day = _add(groups, lambda g: g["day"])
    count = sum(int(d["r_n"] or 0) for d in per_day.values())
    ready = sum(int(d["r_ready"] or 0) for d in per_day.values())
    brier_sum = sum(d["r_brier"] or 0.0 for d in per_day.values())
    bins = []
    for b in range(READINESS_BINS):
        sums = reliability.get(b, {})
        n = int(sums.get("r_n") or 0)
        bins.append(
            ReliabilityBin(
                low=100 * b // READINESS_BINS,
                high=100 * (b + 1) // READINESS_BINS,
                count=n,
                mean_probability=sums["r_p"] / n if n else None,
                observed=int(sums["r_ready"] or 0) / n if n else None,
            )
        )
    if not count:
        return ReadinessReport(count=0, ready=0, brier=None, baseline_brier=None, ece=None, bins=bins, daily=[])
    share = ready / count
    daily = []
    for day in sorted(per_day):
        n = int(per_day[day]["r_n"] or 0)
        if not n:
            continue
        observed = int(per_day[day]["r_ready"] or 0) / n
        daily.append(
            {
                "day": day,
                "count": n,
                "brier": per_day[day]["r_brier"] / n,
                "baseline_brier": share * share - 2 * share * observed + observed,
            }
        )
    ece = sum(b.count / count * abs(b.mean_probability - b.observed) for b in bins if b.count)
    return ReadinessReport(
        count=count,
        ready=ready,
        brier=brier_sum / count,
        baseline_brier=share * (1 - share),
        ece=ece,
        bins=bins,
        daily=daily,
    )


def _readiness_chart(readiness: ReadinessReport) -> dict:
    return {
        "days": [d["day"].isoformat() for d in readiness.daily],
        "brier": [round(d["brier"], 4) for d in readiness.daily],
        "baseline": [round(d["baseline_brier"], 4) for d in readiness.daily],
        "reliability": [
            {"x": round(100 * b.mean_probability, 2), "y": round(100 * b.observed, 2), "count": b.count}
            for b in readiness.bins
            if b.count
        ],
    }


def _chart_data(report: AccuracyReport) -> dict:
    """What the page's charts draw: daily lines per model version, coverage against 95 %, the histogram."""
    days = sorted({r["day"] for r in report.daily})
    labels = [d.isoformat() for d in days]
    index = {d: i for i, d in enumerate(days)}
    versions = sorted({r["model_version"] for r in report.daily})
    series: dict[str, dict[str, list]] = {
        v: {"mae": [None] * len(days), "within_10": [None] * len(days), "coverage": [None] * len(days)}
        for v in versions
    }
    for r in report.daily:
        s = series[r["model_version"]]
        i = index[r["day"]]
        s["mae"][i] = round(r["mae"], 3)
        s["within_10"][i] = round(100 * r["within_10"], 2)
        s["coverage"][i] = round(100 * r["coverage"], 2)
    return {
        "days": labels,
        "series": series,
        "promised_coverage": 100 * PROMISED_COVERAGE,
        "histogram": {
            "labels": [h["label"] for h in report.histogram],
            "counts": [h["count"] for h in report.histogram],
        },
        "readiness": _readiness_chart(report.readiness) if report.readiness is not None else None,
    }


REPORT_WORK_MEM = "64MB"
REPORT_HASH_MEM_MULTIPLIER = 8


@contextmanager
def _report_memory() -> Iterator[None]:
    """Give the report's aggregates room to hash their groups in memory on Postgres.

    With the default 4 MB of `work_mem`, a year's grouping is planned as an on-disk sort of every row
    (bench/pages.py: most of a second). `SET LOCAL` lasts until the outermost transaction ends: the
    report's own, as the page runs in autocommit (with ATOMIC_REQUESTS it would be the request's).
    """
    if connection.vendor != "postgresql":
        yield
        return
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(f"SET LOCAL work_mem = '{REPORT_WORK_MEM}'")
            # Postgres guesses one group per row for the day x model x horizon set (it cannot know the
            # expressions' few values) and would sort instead of hashing; the real hash tables hold a few
            # thousand groups (about 3 MB for a year).
            cursor.execute(f"SET LOCAL hash_mem_multiplier = {REPORT_HASH_MEM_MULTIPLIER}")
        yield


def accuracy_report(f: AccuracyFilter) -> AccuracyReport:
    """Everything the accuracy page shows for one date range (and optionally one car).

    On Postgres the scored rows are read once (GROUPING SETS); elsewhere five GROUP BY queries.
    """
    with _report_memory():
        return _accuracy_report(f)


def _accuracy_report(f: AccuracyFilter, *, one_pass: bool | None = None) -> AccuracyReport:
    qs = scored_predictions(f)
    if one_pass is None:
        one_pass = connection.vendor == "postgresql"
    scan = _scan_grouping_sets(qs) if one_pass else _scan_portable(qs)
    groups = scan.groups
    names = dict(Vehicle.objects.filter(pk__in=list(scan.cars)).values_list("pk", "external_id")) if scan.cars else {}
    report = AccuracyReport(
        filter=f,
        overall=Figures.from_sums(_add(groups, lambda g: 0).get(0, {})),
        by_horizon=accuracy_by_horizon(groups),
        by_model=accuracy_by_model(groups),
        daily=accuracy_daily(groups),
        histogram=error_histogram(scan.bins),
        worst_cars=_worst(scan.cars, names) if f.vehicle is None else [],
        worst_renters=_worst(scan.renters),
        readiness=readiness_report(groups, scan.reliability),
    )
    report.chart = _chart_data(report)
    return report
