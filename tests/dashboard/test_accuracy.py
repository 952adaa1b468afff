"""The accuracy page's figures: what is scored, by horizon, by model version, per day, worst cars and renters."""

from dataclasses import asdict
from datetime import UTC, date, datetime, timedelta

import pytest

from dashboard.selectors.accuracy import AccuracyFilter, accuracy_report
from predictions.models import Prediction
from tests.factories import BookingFactory, PredictionFactory, VehicleFactory
from tests.seed_examples import CREATED, STARTED, URL

DAY = datetime(2026, 3, 10, 9, 0, tzinfo=UTC)
RANGE = AccuracyFilter(start=date(2026, 3, 1), end=date(2026, 3, 31))


def scored(*, car="1", renter="r1", at=DAY, predicted=60.0, actual=60.0, lead_hours=2.0, version="m1", **kw):
    booking = BookingFactory(vehicle=VehicleFactory(external_id=car), user_id=renter, scheduled_start=at)
    return PredictionFactory(
        booking=booking,
        predicted_battery=predicted,
        actual_battery=actual,
        predicted_at=at - timedelta(hours=lead_hours),
        model_version=version,
        **kw,
    )


@pytest.mark.django_db
def test_overall_figures_score_only_current_predictions_picked_up_in_range():
    scored(predicted=60, actual=64)  # error +4, inside ±10
    scored(predicted=60, actual=48)  # error -12, outside the interval
    scored(predicted=50, actual=50, at=DAY + timedelta(days=1))  # error 0
    # Not scored: an earlier prediction of the same booking, one not picked up yet, one outside the range.
    older = scored(predicted=10, actual=64)
    older.is_current = False
    older.save()
    PredictionFactory(predicted_battery=70)  # no actual level
    scored(predicted=0, actual=100, at=datetime(2026, 4, 1, 0, 0, tzinfo=UTC))

    report = accuracy_report(RANGE)

    assert report.overall.count == 3
    assert report.overall.mae == pytest.approx((4 + 12 + 0) / 3)
    assert report.overall.bias == pytest.approx((4 - 12 + 0) / 3)
    assert report.overall.within_10 == pytest.approx(2 / 3)
    assert report.overall.coverage == pytest.approx(2 / 3)
    assert report.overall.rmse == pytest.approx(((16 + 144 + 0) / 3) ** 0.5)


@pytest.mark.django_db
def test_figures_by_horizon_and_by_model_version():
    scored(predicted=60, actual=62, lead_hours=1, version="m1")
    scored(predicted=60, actual=70, lead_hours=12, version="m1")
    scored(predicted=60, actual=30, lead_hours=48, version="m2")

    report = accuracy_report(RANGE)

    horizons = {label: f for label, f in report.by_horizon}
    assert [label for label, _ in report.by_horizon] == ["under 6 h", "6 to 24 h", "over 24 h"]
    assert (horizons["under 6 h"].count, horizons["under 6 h"].mae) == (1, pytest.approx(2))
    assert (horizons["6 to 24 h"].count, horizons["6 to 24 h"].mae) == (1, pytest.approx(10))
    assert (horizons["over 24 h"].count, horizons["over 24 h"].mae) == (1, pytest.approx(30))
    models = dict(report.by_model)
    assert models["m1"].count == 2 and models["m1"].mae == pytest.approx(6)
    assert models["m2"].count == 1 and models["m2"].coverage == 0


@pytest.mark.django_db
def test_daily_series_and_chart_data_per_model_version():
    scored(predicted=60, actual=64, version="m1")
    scored(predicted=60, actual=80, version="m1", at=DAY + timedelta(days=2))
    scored(predicted=60, actual=61, version="m2", at=DAY + timedelta(days=2))

    report = accuracy_report(RANGE)

    assert [(r["day"], r["model_version"], r["count"]) for r in report.daily] == [
        (date(2026, 3, 10), "m1", 1),
        (date(2026, 3, 12), "m1", 1),
        (date(2026, 3, 12), "m2", 1),
    ]
    chart = report.chart
    assert chart["days"] == ["2026-03-10", "2026-03-12"]
    assert chart["series"]["m1"]["mae"] == [4, 20]
    assert chart["series"]["m2"]["mae"] == [None, 1]
    assert chart["series"]["m1"]["within_10"] == [100, 0]
    assert chart["promised_coverage"] == 95


@pytest.mark.django_db
def test_error_histogram_bins_and_end_bins():
    for predicted, actual in [(60, 61), (60, 60.5), (60, 57), (60, 100), (90, 0)]:
        scored(predicted=predicted, actual=actual)

    counts = {h["low"]: h["count"] for h in accuracy_report(RANGE).histogram}

    assert counts[0] == 2  # +1 and +0.5 in [0, 2)
    assert counts[-4] == 1  # -3 in [-4, -2)
    assert counts[28] == 1  # +40 lands in the top end bin
    assert counts[-30] == 1  # -90 lands in the bottom end bin
    assert sum(counts.values()) == 5


@pytest.mark.django_db
def test_worst_cars_and_renters_need_enough_bookings_and_sort_by_mae():
    for i in range(3):
        scored(car="bad", renter="careless", predicted=60, actual=30, at=DAY + timedelta(hours=i))
        scored(car="good", renter="careful", predicted=60, actual=61, at=DAY + timedelta(hours=i))
    scored(car="once", renter="rare", predicted=60, actual=0)  # one booking only: not listed

    report = accuracy_report(RANGE)

    assert [(r["key"], r["count"]) for r in report.worst_cars] == [("bad", 3), ("good", 3)]
    assert report.worst_cars[0]["mae"] == pytest.approx(30)
    assert [r["key"] for r in report.worst_renters] == ["careless", "careful"]


@pytest.mark.django_db
def test_car_filter_keeps_one_car():
    scored(car="A", predicted=60, actual=70)
    scored(car="B", predicted=60, actual=60)
    report = accuracy_report(AccuracyFilter(start=RANGE.start, end=RANGE.end, vehicle=VehicleFactory(external_id="A")))
    assert report.overall.count == 1 and report.overall.mae == pytest.approx(10)


@pytest.mark.django_db
def test_page_renders_figures_and_chart_data(staff_client):
    scored(predicted=60, actual=64)
    response = staff_client.get("/admin/dashboard/accuracy/", {"start": "2026-03-01", "end": "2026-03-31"})
    assert response.status_code == 200
    html = response.content.decode()
    assert 'id="fig-count">1<' in html
    assert 'id="accuracy-data"' in html and '"2026-03-10"' in html
    assert 'data-chart="accuracy-histogram"' in html


@pytest.mark.django_db
def test_page_reports_bad_filters_instead_of_failing(staff_client):
    response = staff_client.get(
        "/admin/dashboard/accuracy/", {"start": "2026-03-31", "end": "2026-03-01", "car": "nope"}
    )
    assert response.status_code == 200
    html = response.content.decode()
    assert "No car with id" in html
    assert 'id="fig-count"' not in html


@pytest.mark.django_db
def test_a_booking_scored_through_the_api_appears_on_the_page(post, staff_client):
    """booking.created makes the prediction, booking.started scores it: the page shows that error."""
    assert post(URL["created"], CREATED).status_code in (200, 201)
    assert post(URL["started"], STARTED).status_code == 200

    response = staff_client.get("/admin/dashboard/accuracy/", {"start": "2025-11-01", "end": "2025-11-30"})

    shown = Prediction.objects.get(booking_external_id=CREATED["booking_id"], is_current=True)
    report = response.context["report"]
    assert report.overall.count == 1
    assert report.overall.mae == pytest.approx(abs(STARTED["actual_battery_at_start"] - shown.predicted_battery))
    assert [version for version, _ in report.by_model] == [shown.model_version]


@pytest.mark.django_db
@pytest.mark.postgres
def test_the_one_pass_postgres_report_equals_the_portable_one():
    """On Postgres the page reads the rows once (GROUPING SETS); its figures must equal the four-query ones."""
    from dashboard.selectors.accuracy import _accuracy_report

    for i in range(40):
        scored(
            car=f"c{i % 7}",
            renter=f"r{i % 5}",
            predicted=50 + (i * 7.3) % 30,
            actual=40 + (i * 13.7) % 45,
            lead_hours=[1, 9, 30][i % 3],
            version=["m1", "m2"][i % 2],
            at=DAY + timedelta(hours=5 * i),
            # Readiness on three rows of four (the fourth as stored before it existed).
            probability_ready=round((i * 0.137) % 1, 3) if i % 4 else None,
            required_level=30 + (i * 11) % 40 if i % 4 else None,
        )

    one_pass = _accuracy_report(RANGE, one_pass=True)
    portable = _accuracy_report(RANGE, one_pass=False)

    assert one_pass.overall.count == 40
    # Sums of floats in another order may differ in the last digit: compare to 1e-9.
    assert asdict(one_pass.overall) == pytest.approx(asdict(portable.overall), rel=1e-9)
    for field in ("by_horizon", "by_model"):
        ours, theirs = getattr(one_pass, field), getattr(portable, field)
        assert [label for label, _ in ours] == [label for label, _ in theirs]
        for (_, a), (_, b) in zip(ours, theirs, strict=True):
            assert asdict(a) == pytest.approx(asdict(b), rel=1e-9), field
    assert one_pass.histogram == portable.histogram
    for field in ("worst_cars", "worst_renters", "daily"):
        ours, theirs = getattr(one_pass, field), getattr(portable, field)
        assert len(ours) == len(theirs) > 0, field
        for a, b in zip(ours, theirs, strict=True):
            assert a == pytest.approx(b, rel=1e-9), field
    ours, theirs = one_pass.readiness, portable.readiness
    assert (ours.count, ours.ready) == (theirs.count, theirs.ready) == (30, theirs.ready)
    assert (ours.brier, ours.baseline_brier, ours.ece) == pytest.approx(
        (theirs.brier, theirs.baseline_brier, theirs.ece), rel=1e-9
    )
    assert [(b.count, b.observed) for b in ours.bins] == [(b.count, b.observed) for b in theirs.bins]
    assert [b.mean_probability for b in ours.bins] == pytest.approx([b.mean_probability for b in theirs.bins])
    assert len(ours.daily) == len(theirs.daily) > 0
    for a, b in zip(ours.daily, theirs.daily, strict=True):
        assert a == pytest.approx(b, rel=1e-9)
