"""Issue 16 on the staff pages: the at-risk list on the operations page (with swap suggestions from the
`booking.readiness_changed` outbox), the plug-in deadlines on the car timeline, and readiness calibration on
the accuracy page (reliability bins, Brier score against the fleet's base rate, expected calibration error)."""

import itertools
import json
from datetime import UTC, date, datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from bookings.models import BookingStatus
from callbacks.models import CallbackItem
from dashboard.selectors.accuracy import AccuracyFilter, accuracy_report
from tests.factories import BookingFactory, CallbackOutboxFactory, PredictionFactory, VehicleFactory

OPERATIONS = "/admin/dashboard/operations/"


def _soon(hours: float) -> datetime:
    return timezone.now() + timedelta(hours=hours)


def at_risk(*, hours: float, plug_in_in: float | None, car: str = "7", status=BookingStatus.SCHEDULED, **kw):
    """The current prediction of a booking picked up in `hours`, at risk, to be plugged in `plug_in_in` hours."""
    booking = BookingFactory(vehicle=VehicleFactory(external_id=car), scheduled_start=_soon(hours), status=status)
    fields = {
        "predicted_battery": 30.0,
        "required_level": 40.0,
        "probability_ready": 0.2344,
        "at_risk": True,
        "charge_needed": 14.56,
        "plug_in_by": None if plug_in_in is None else _soon(plug_in_in),
        **kw,
    }
    return PredictionFactory(booking=booking, **fields)


_SEQUENCE = itertools.count(1)


def readiness_changed(booking_id: str, vehicles: list[tuple], *, age_minutes: float = 0, event=None):
    """A readiness callback as the outbox writes one: its body, and an item naming its booking with a sequence
    that grows with every call (a newer prediction of the booking)."""
    body = {
        "event": "booking.readiness_changed",
        "booking": {"booking_id": booking_id, "vehicle_id": "7"},
        "suggested_vehicles": [{"vehicle_id": v, "probability_ready": p} for v, p in vehicles],
    }
    row = CallbackOutboxFactory(
        event=event or "booking.readiness_changed",
        body=json.dumps(body, separators=(",", ":")),
        age=timedelta(minutes=age_minutes),
    )
    CallbackItem.objects.create(outbox=row, booking_external_id=booking_id, sequence=next(_SEQUENCE))
    return row


# --- operations: the at-risk list ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_at_risk_list_puts_unreachable_first_then_the_soonest_deadline(staff_client):
    late_deadline = at_risk(hours=10, plug_in_in=8)
    early_deadline = at_risk(hours=30, plug_in_in=2)  # picked up later, but must be plugged in sooner
    unreachable = at_risk(hours=40, plug_in_in=None)
    passed = at_risk(hours=5, plug_in_in=-1)  # the deadline was ahead when predicted; it is behind us now

    response = staff_client.get(OPERATIONS)

    rows = response.context["at_risk"]
    assert [r.prediction.pk for r in rows] == [unreachable.pk, passed.pk, early_deadline.pk, late_deadline.pk]
    assert [r.cannot_reach_in_time for r in rows] == [True, False, False, False]
    assert [r.deadline_passed for r in rows] == [False, True, False, False]
    html = response.content.decode()
    table = html[html.index('id="at-risk"') : html.index('id="idle-jumps"')]
    assert table.index(unreachable.booking_external_id) < table.index(early_deadline.booking_external_id)
    assert table.count("cannot reach in time") == 1
    assert table.count("passed ") == 1


@pytest.mark.django_db
def test_at_risk_row_shows_every_column(staff_client):
    p = at_risk(hours=20, plug_in_in=6, car="fleet/9", user_id="renter-3", confidence_lower=21.5, confidence_upper=38)

    html = staff_client.get(OPERATIONS).content.decode()

    table = html[html.index('id="at-risk"') : html.index('id="idle-jumps"')]
    row = table[table.index("<tbody>") : table.index("</tbody>")]
    for shown in (
        f'?q={p.booking_external_id}">{p.booking_external_id}</a>',  # booking, linked to the admin
        'href="/admin/dashboard/cars/fleet/9/timeline/"',  # car, linked to its timeline
        "renter-3",
        p.booking_start_time.strftime("%Y-%m-%d %H:%M"),
        ">30.0<",  # predicted level
        ">21.5\u201338.0<",  # its interval
        ">40.0<",  # required level
        ">23.4 %<",  # probability ready, as a percentage
        ">+14.6<",  # charge needed, points
        p.plug_in_by.strftime("%Y-%m-%d %H:%M"),
        '<td class="swaps">—</td>',  # no readiness callback yet
    ):
        assert shown in row, shown


@pytest.mark.django_db
def test_bookings_not_at_risk_past_scored_or_without_readiness_are_not_listed(staff_client):
    listed = at_risk(hours=4, plug_in_in=1)
    at_risk(hours=4, plug_in_in=None, at_risk=False, probability_ready=0.97, charge_needed=0)  # not at risk
    at_risk(hours=-3, plug_in_in=None)  # picked up already
    at_risk(hours=24 * 5, plug_in_in=24 * 4)  # beyond the page's 3 days
    at_risk(hours=2, plug_in_in=1, status=BookingStatus.CANCELLED)
    at_risk(hours=1, plug_in_in=None, status=BookingStatus.ACTIVE, actual_battery=31.0)  # picked up and scored
    old = at_risk(hours=6, plug_in_in=2)  # a superseded prediction of a listed booking's car
    old.is_current = False
    old.save()
    PredictionFactory(booking=BookingFactory(scheduled_start=_soon(3)), predicted_battery=5)  # before readiness

    response = staff_client.get(OPERATIONS)

    assert [r.prediction.pk for r in response.context["at_risk"]] == [listed.pk]
    assert len(response.context["low"]) == 1  # the prediction without readiness is still on the low list
    assert staff_client.get(OPERATIONS, {"days": "6"}).context["at_risk"][-1].prediction.booking_start_time > _soon(
        24 * 4
    )


@pytest.mark.django_db
def test_suggested_swaps_come_from_the_newest_readiness_callback_of_the_booking(staff_client):
    p = at_risk(hours=10, plug_in_in=3)
    other = at_risk(hours=12, plug_in_in=4)
    readiness_changed(p.booking_external_id, [("old-car", 0.91)], age_minutes=30)
    readiness_changed(p.booking_external_id, [("81", 0.968), ("fleet/2", 0.93)], age_minutes=5)
    # Neither of these is a readiness callback of `p`: a predictions.updated row, and another booking's row
    # that names p's id among its suggestions.
    readiness_changed(p.booking_external_id, [("wrong", 0.99)], event="predictions.updated")
    readiness_changed("elsewhere", [(p.booking_external_id, 0.99)])
    odd = at_risk(hours=14, plug_in_in=5)  # a suggestion without a usable probability is shown without one
    readiness_changed(odd.booking_external_id, [("83", "high"), ("", 0.9)])

    response = staff_client.get(OPERATIONS)

    rows = {r.prediction.pk: r for r in response.context["at_risk"]}
    assert [(s.vehicle_id, s.probability_ready) for s in rows[p.pk].suggestions] == [("81", 0.968), ("fleet/2", 0.93)]
    assert rows[other.pk].suggestions == []
    assert [(s.vehicle_id, s.probability_ready) for s in rows[odd.pk].suggestions] == [("83", None)]
    html = response.content.decode()
    assert '<a href="/admin/dashboard/cars/81/timeline/">81</a> (97 %), ' in html
    assert '<a href="/admin/dashboard/cars/fleet/2/timeline/">fleet/2</a> (93 %)' in html
    assert "old-car" not in html and "wrong" not in html
    assert '<td class="swaps"><a href="/admin/dashboard/cars/83/timeline/">83</a></td>' in html


@pytest.mark.django_db
def test_operations_page_queries_do_not_grow_with_at_risk_rows(staff_client):
    def page_queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert staff_client.get(OPERATIONS).status_code == 200
        return len(captured.captured_queries)

    first = at_risk(hours=5, plug_in_in=2, car="a")
    readiness_changed(first.booking_external_id, [("b", 0.95)])
    one = page_queries()
    for i in range(8):
        p = at_risk(hours=6 + i, plug_in_in=3 + i, car=f"car{i}")
        readiness_changed(p.booking_external_id, [(f"swap{i}", 0.95)])
    many = page_queries()

    assert len(staff_client.get(OPERATIONS).context["at_risk"]) == 9
    assert many == one
    assert one <= 6  # session and user, the low list, the at-risk list, its suggestions, the idle-drain jumps


# --- car timeline: plug-in deadlines ------------------------------------------------------------------------


@pytest.mark.django_db
def test_timeline_draws_and_lists_the_plug_in_deadline_of_each_at_risk_pickup(staff_client):
    deadline = (timezone.now() + timedelta(hours=9)).replace(minute=25, second=0, microsecond=0)
    saved = at_risk(hours=30, plug_in_in=None, plug_in_by=deadline, charge_needed=12.34)
    at_risk(hours=50, plug_in_in=None)  # at risk, but no charge saves it: listed, not drawn
    at_risk(hours=70, plug_in_in=None, at_risk=False, probability_ready=0.95, charge_needed=0)  # fine
    PredictionFactory(booking=BookingFactory(vehicle=VehicleFactory(external_id="7"), scheduled_start=_soon(90)))

    response = staff_client.get("/admin/dashboard/cars/7/timeline/")

    timeline = response.context["timeline"]
    assert len(timeline.rows) == 4
    label = f"plug in by {deadline:%H:%M} (+12.3 pts)"
    assert timeline.chart["deadlines"] == [
        {
            "x": int(deadline.timestamp() * 1000),
            "pickup": int(saved.booking_start_time.timestamp() * 1000),
            "charge_needed": 12.34,
            "label": label,
            "booking_id": saved.booking_external_id,
        }
    ]
    html = response.content.decode()
    table = html[html.index('id="timeline-bookings"') :]
    assert f'<td class="plug-in-by">{deadline:%Y-%m-%d %H:%M} (+12.3 pts)</td>' in table
    assert table.count("cannot reach in time") == 1
    assert table.count('<td class="num bad">23.4 %</td>') == 2  # the two at-risk rows
    assert '<td class="num">95.0 %</td>' in table
    assert (
        json.loads(html.split('id="timeline-data" type="application/json">')[1].split("</script>")[0])["deadlines"][0][
            "label"
        ]
        == label
    )


# --- accuracy: readiness calibration ------------------------------------------------------------------------

DAY = datetime(2026, 3, 10, 9, 0, tzinfo=UTC)
RANGE = AccuracyFilter(start=date(2026, 3, 1), end=date(2026, 3, 31))


def scored_ready(*, probability: float | None, required: float | None, actual: float, at: datetime = DAY):
    booking = BookingFactory(scheduled_start=at, status=BookingStatus.COMPLETED, battery_at_start=actual)
    return PredictionFactory(
        booking=booking,
        predicted_battery=50.0,
        actual_battery=actual,
        probability_ready=probability,
        required_level=required,
        at_risk=None if probability is None else probability < 0.9,
    )


def _seven_scored_pickups() -> None:
    """Seven pick-ups with readiness on two days, four of them ready; and three rows the figures must ignore."""
    day2 = DAY + timedelta(days=2)
    scored_ready(probability=0.85, required=40, actual=50)  # ready, bin 80-90
    scored_ready(probability=0.82, required=40, actual=30)  # not ready, bin 80-90
    scored_ready(probability=0.10, required=50, actual=45)  # not ready, bin 10-20 (its lower edge)
    scored_ready(probability=0.95, required=20, actual=60, at=day2)  # ready, bin 90-100
    scored_ready(probability=1.00, required=10, actual=10, at=day2)  # ready (exactly the level), bin 90-100
    scored_ready(probability=0.50, required=30, actual=29.9, at=day2)  # not ready, bin 50-60
    scored_ready(probability=0.95, required=20, actual=70, at=day2)  # ready, bin 90-100
    scored_ready(probability=None, required=None, actual=10)  # stored before readiness existed
    scored_ready(probability=0.05, required=90, actual=95, at=datetime(2026, 4, 2, tzinfo=UTC))  # out of range
    PredictionFactory(booking=BookingFactory(scheduled_start=DAY), probability_ready=0.3, required_level=40)  # unscored


@pytest.mark.django_db
def test_reliability_bins_brier_and_ece_by_hand():
    _seven_scored_pickups()

    r = accuracy_report(RANGE).readiness

    assert (r.count, r.ready) == (7, 4)
    counts = {b.label: (b.count, b.mean_probability, b.observed) for b in r.bins}
    assert len(r.bins) == 10 and [b.low for b in r.bins] == list(range(0, 100, 10))
    assert counts["10\u201320 %"] == (1, pytest.approx(0.10), 0)
    assert counts["50\u201360 %"] == (1, pytest.approx(0.50), 0)
    assert counts["80\u201390 %"] == (2, pytest.approx(0.835), 0.5)  # "given 80-90 %, one of two was ready"
    assert counts["90\u2013100 %"] == (3, pytest.approx(2.9 / 3), 1)
    assert sum(b.count for b in r.bins) == 7
    # Brier: mean of (p - ready)^2 = (0.15^2 + 0.82^2 + 0.1^2 + 0.05^2 + 0 + 0.5^2 + 0.05^2) / 7.
    assert r.brier == pytest.approx(0.9599 / 7)
    assert r.base_rate == pytest.approx(4 / 7)
    assert r.baseline_brier == pytest.approx(4 / 7 * 3 / 7)
    # ECE: (1 x 0.10 + 1 x 0.50 + 2 x |0.835 - 0.5| + 3 x |0.9667 - 1|) / 7.
    assert r.ece == pytest.approx(1.37 / 7)
    assert [(d["day"], d["count"]) for d in r.daily] == [(date(2026, 3, 10), 3), (date(2026, 3, 12), 4)]
    assert r.daily[0]["brier"] == pytest.approx(0.7049 / 3)
    assert r.daily[1]["brier"] == pytest.approx(0.255 / 4)
    # The baseline says 4/7 every day: day 1 had 1 ready of 3, day 2 had 3 of 4.
    assert r.daily[0]["baseline_brier"] == pytest.approx(((3 / 7) ** 2 + 2 * (4 / 7) ** 2) / 3)
    assert r.daily[1]["baseline_brier"] == pytest.approx((3 * (3 / 7) ** 2 + (4 / 7) ** 2) / 4)


@pytest.mark.django_db
def test_accuracy_page_shows_the_readiness_figures_table_and_chart_data(staff_client):
    _seven_scored_pickups()

    with CaptureQueriesContext(connection) as captured:
        response = staff_client.get("/admin/dashboard/accuracy/", {"start": "2026-03-01", "end": "2026-03-31"})

    # Session and user, the worst cars' names, and the scan: five GROUP BYs on SQLite; on Postgres one
    # GROUPING SETS query inside the report's savepoint with its two SET LOCALs (readiness added one GROUP BY on
    # SQLite, none on Postgres).
    assert len(captured.captured_queries) == 8
    html = response.content.decode()
    assert 'id="fig-count">8<' in html  # every scored pick-up, with readiness or not, for the error figures
    assert 'id="fig-readiness-count">7<' in html
    assert 'id="fig-brier">0.1371<' in html  # 0.9599 / 7
    assert 'id="fig-brier-baseline">0.2449<' in html  # 12 / 49
    assert 'id="fig-ece">0.1957<' in html  # 1.37 / 7
    table = html[html.index('id="reliability"') :]
    table = table[: table.index("</table>")]
    assert (
        '<tr><td>80\u201390 %</td><td class="num">2</td><td class="num">0.835</td><td class="num">0.500</td>' in table
    )
    assert table.count("<tr><td>") == 10
    chart = json.loads(html.split('id="accuracy-data" type="application/json">')[1].split("</script>")[0])["readiness"]
    assert chart["days"] == ["2026-03-10", "2026-03-12"]
    assert chart["brier"] == [round(0.7049 / 3, 4), round(0.255 / 4, 4)]
    assert chart["reliability"] == [
        {"x": 10.0, "y": 0.0, "count": 1},
        {"x": 50.0, "y": 0.0, "count": 1},
        {"x": 83.5, "y": 50.0, "count": 2},
        {"x": 96.67, "y": 100.0, "count": 3},
    ]
    assert 'data-chart="readiness-reliability"' in html and 'data-chart="readiness-brier"' in html


@pytest.mark.django_db
def test_pages_answer_for_predictions_stored_before_readiness(staff_client):
    car = VehicleFactory(external_id="old")
    PredictionFactory(
        booking=BookingFactory(vehicle=car, scheduled_start=_soon(-30), status=BookingStatus.COMPLETED),
        actual_battery=40.0,
        predicted_at=_soon(-32),
    )
    PredictionFactory(booking=BookingFactory(vehicle=car, scheduled_start=_soon(5)), predicted_battery=10)

    accuracy = staff_client.get("/admin/dashboard/accuracy/")
    operations = staff_client.get(OPERATIONS)
    timeline = staff_client.get("/admin/dashboard/cars/old/timeline/")

    assert accuracy.status_code == operations.status_code == timeline.status_code == 200
    readiness = accuracy.context["report"].readiness
    assert (readiness.count, readiness.brier, readiness.ece) == (0, None, None)
    assert accuracy.context["report"].overall.count == 1
    assert "No scored pick-up in this range carried readiness yet." in accuracy.content.decode()
    assert operations.context["at_risk"] == [] and len(operations.context["low"]) == 1
    assert "No upcoming pick-up is at risk." in operations.content.decode()
    assert timeline.context["timeline"].chart["deadlines"] == []
    assert [r.percent_ready for r in timeline.context["timeline"].rows] == [None, None]
