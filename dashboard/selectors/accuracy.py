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
    Avg,
    Case,
    Count,
    DurationField,
    ExpressionWrapper,
    F,
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


SUM_KEYS = ("n", "abs", "sq", "err", "w5", "w10", "w15", "covered", "width")


@dataclass(frozen=True)
class Figures:
    count: int
    mae: float | None
    rmse: float | None
    bias: float | None
    within_5: float | None
    within_10: float | None
    within_15: float | None
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
            within_5=mean("w5"),
            within_10=mean("w10"),
            within_15=mean("w15"),
            coverage=mean("covered"),
            mean_width=mean("width"),
        )

    @property
    def coverage_gap(self) -> float | None:
        """Coverage minus the promised 95 %: negative means the intervals are too narrow."""
        return None if self.coverage is None else self.coverage - PROMISED_COVERAGE


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
        "w5": _within(5),
        "w10": _within(10),
        "w15": _within(15),
        "covered": Count(
            "prediction_error",
            filter=Q(actual_battery__gte=F("confidence_lower"), actual_battery__lte=F("confidence_upper")),
        ),
        "width": Sum(F("confidence_upper") - F("confidence_lower")),
    }


def _horizon_bucket() -> tuple[Case, ExpressionWrapper]:
    """A 0-based horizon bucket (see `HORIZONS`) and the lead-time expression it compares."""
    lead = ExpressionWrapper(F("booking_start_time") - F("predicted_at"), output_field=DurationField())
    whens = [When(Q(lead__lt=limit), then=Value(i)) for i, (_, limit) in enumerate(HORIZONS) if limit is not None]
    return Case(*whens, default=Value(len(HORIZONS) - 1), output_field=IntegerField()), lead


def accuracy_groups(qs: QuerySet[Prediction]) -> list[dict]:
    """One scan: sums per pick-up day, model version and horizon bucket (a few thousand rows for a year)."""
    bucket, lead = _horizon_bucket()
    return list(
        qs.annotate(day=TruncDate("booking_start_time"), lead=lead, bucket=bucket)
        .values("day", "model_version", "bucket")
        .annotate(**_sum_aggregates())
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


def error_histogram(qs: QuerySet[Prediction]) -> list[dict]:
    """Counts of (actual - predicted) in bins of 2 points; the two end bins hold everything beyond ±30."""
    half = HISTOGRAM_HALF_BINS
    bin_expr = Least(
        Greatest(Floor(F("prediction_error") / HISTOGRAM_BIN_POINTS), Value(-half)),
        Value(half - 1),
        output_field=IntegerField(),
    )
    counts = {int(r["bin"]): r["n"] for r in qs.annotate(bin=bin_expr).values("bin").annotate(n=Count("*")).order_by()}
    rows = []
    for b in range(-half, half):
        low = b * HISTOGRAM_BIN_POINTS
        label = f"{low:+d}..{low + HISTOGRAM_BIN_POINTS:+d}"
        if b == -half:
            label = f"< {low + HISTOGRAM_BIN_POINTS:+d}"
        elif b == half - 1:
            label = f">= {low:+d}"
        rows.append({"bin": b, "low": low, "label": label, "count": counts.get(b, 0)})
    return rows


def _worst(qs: QuerySet[Prediction], key: str) -> list[dict]:
    rows = (
        qs.values(key)
        .annotate(n=Count("*"), mae=Avg(Abs(F("prediction_error"))), bias=Avg("prediction_error"))
        .filter(n__gte=WORST_MIN_BOOKINGS)
        .order_by("-mae", key)[:WORST_LIMIT]
    )
    return [{"key": r[key], "count": r["n"], "mae": r["mae"], "bias": r["bias"]} for r in rows]


def worst_cars(qs: QuerySet[Prediction]) -> list[dict]:
    return _worst(qs, "vehicle__external_id")


def worst_renters(qs: QuerySet[Prediction]) -> list[dict]:
    return _worst(qs.exclude(user_id=""), "user_id")


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
    }


REPORT_WORK_MEM = "64MB"


@contextmanager
def _report_memory() -> Iterator[None]:
    """Give the report's aggregates room to hash their groups in memory on Postgres.

    With the default 4 MB of `work_mem`, a year's day x model x horizon grouping is planned as an
    on-disk sort of every row (bench/pages.py: about 0.7 s of a 1 s page); `SET LOCAL` ends with
    the transaction, so no other query runs with the larger budget.
    """
    if connection.vendor != "postgresql":
        yield
        return
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(f"SET LOCAL work_mem = '{REPORT_WORK_MEM}'")
        yield


def accuracy_report(f: AccuracyFilter) -> AccuracyReport:
    """Everything the accuracy page shows for one date range (and optionally one car): four scans."""
    with _report_memory():
        return _accuracy_report(f)


def _accuracy_report(f: AccuracyFilter) -> AccuracyReport:
    qs = scored_predictions(f)
    groups = accuracy_groups(qs)
    report = AccuracyReport(
        filter=f,
        overall=Figures.from_sums(_add(groups, lambda g: 0).get(0, {})),
        by_horizon=accuracy_by_horizon(groups),
        by_model=accuracy_by_model(groups),
        daily=accuracy_daily(groups),
        histogram=error_histogram(qs),
        worst_cars=worst_cars(qs) if f.vehicle is None else [],
        worst_renters=worst_renters(qs),
    )
    report.chart = _chart_data(report)
    return report
