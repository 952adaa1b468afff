"""What the platform may send that must never poison a car, crash, or linger: future readings, late pick-ups,
no-shows, duplicate future bookings and impossible modifications."""

from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from bookings.models import BatteryReading, Booking, BookingStatus, InboundEvent
from bookings.tasks import no_shows_mark
from common.api.fields import iso
from predictions.models import Prediction
from tests.seed_examples import CREATED, ENDED, FUTURE, MODIFIED, PREDICT_REAL_TIME, STARTED, URL
from tests.tables import table_counts

pytestmark = pytest.mark.django_db


# --- readings from the future -------------------------------------------------------------------


def test_a_level_from_the_future_is_refused_and_does_not_poison_the_car(post, api):
    good = post(URL["predict"], PREDICT_REAL_TIME).json()
    before = table_counts()

    poisoned = post(
        URL["predict"],
        {
            **PREDICT_REAL_TIME,
            "current_battery_level": 3,
            "current_timestamp": "2099-01-01T00:00:00Z",
            "booking_start_time": "2099-01-02T00:00:00Z",
            "intermediate_bookings": [],
        },
    )

    assert poisoned.status_code == 400
    assert list(poisoned.json()["fields"]) == ["current_timestamp"]
    assert "ahead of the server's clock" in poisoned.json()["detail"]
    assert table_counts() == before
    later = post(URL["predict"], {"vehicle_id": "78", "booking_start_time": "2025-11-03T19:00:00Z"}).json()
    assert later["predicted_battery_percentage"] > 20  # still starts from 65.5 %, not 3 %
    assert good["predicted_battery_percentage"] > 20


@pytest.mark.parametrize(
    ("url", "body", "field"),
    [
        ("created", {**CREATED, "current_timestamp": "2099-01-01T00:00:00Z"}, "current_timestamp"),
        ("started", {**STARTED, "actual_started_at": "2099-01-01T00:00:00Z"}, "actual_started_at"),
        ("ended", {**ENDED, "ends_at": "2099-01-01T00:00:00Z"}, "ends_at"),
        ("ended", {**ENDED, "starts_at": "2098-12-31T00:00:00Z", "ends_at": "2099-01-01T00:00:00Z"}, "starts_at"),
    ],
)
def test_every_observed_time_in_an_event_is_refused_when_ahead_of_the_clock(post, url, body, field):
    before = table_counts()

    response = post(URL[url], body)

    assert response.status_code == 400, response.content
    assert field in response.json()["fields"]
    assert table_counts() == before


def test_a_little_clock_skew_is_accepted_and_the_allowance_is_configurable(post, settings):
    soon = iso(timezone.now() + timedelta(seconds=60))
    body = {**PREDICT_REAL_TIME, "current_timestamp": soon, "booking_start_time": soon, "intermediate_bookings": []}

    assert post(URL["predict"], body).status_code == 200
    settings.MAX_CLOCK_SKEW_SECONDS = 10
    assert post(URL["predict"], body).status_code == 400


def test_scheduled_times_in_the_future_are_not_observations(post):
    response = post(URL["created"], {**CREATED, "starts_at": "2099-01-01T10:00:00Z", "ends_at": "2099-01-01T12:00:00Z"})

    assert response.status_code == 200


# --- late pick-up -------------------------------------------------------------------------------


def test_a_late_pick_up_is_predicted_for_now_with_a_note(post, api):
    late = {
        **PREDICT_REAL_TIME,
        "booking_start_time": "2025-11-02T11:40:00Z",  # 20 minutes before the level was reported
        "current_timestamp": "2025-11-02T12:00:00Z",
        "intermediate_bookings": [],
    }

    response = post(URL["predict"], late)

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["booking_start_time"] == "2025-11-02T12:00:00Z"
    assert body["predicted_battery_percentage"] == pytest.approx(65.5, abs=0.01)  # no time has passed since then
    assert len(body["notes"]) == 1 and "late" in body["notes"][0]
    stored = api.get("/api/v1/predictions/BK123456").json()
    assert stored["booking_start_time"] == "2025-11-02T12:00:00Z" and stored["notes"] == []


def test_an_on_time_prediction_has_no_notes(post):
    assert post(URL["predict"], PREDICT_REAL_TIME).json()["notes"] == []


# --- no-shows -----------------------------------------------------------------------------------


def ended_later(hours: float) -> dict:
    """BK123456 driven and returned `hours` after BK789's start, which nobody picked up."""
    end = datetime(2025, 11, 3, 22, tzinfo=UTC) + timedelta(hours=hours)
    return {
        **ENDED,
        "starts_at": iso(end - timedelta(hours=1)),
        "ends_at": iso(end),
        "future_bookings": FUTURE,
    }


def test_a_booking_not_picked_up_within_the_grace_becomes_a_no_show_and_leaves_the_cascade(post):
    post(URL["created"], CREATED)
    post(URL["started"], STARTED)

    body = post(URL["ended"], ended_later(hours=30)).json()

    assert Booking.objects.get(external_id="BK789").status == BookingStatus.NO_SHOW
    assert body["affected_bookings"] == []
    # never to be scored unless picked up late, so retention may remove the superseded ones
    assert set(Prediction.objects.filter(booking_external_id="BK789").values_list("status", flat=True)) == {"cancelled"}
    assert any("no-show" in note for note in body["notes"])
    issued = Prediction.objects.filter(booking_external_id="BK789").count()
    post(
        URL["created"],
        {
            **CREATED,
            "booking_id": "BK2",
            "starts_at": "2025-11-06T10:00:00Z",
            "ends_at": "2025-11-06T11:00:00Z",
            "current_timestamp": "2025-11-05T05:00:00Z",
        },
    )
    assert Prediction.objects.filter(booking_external_id="BK789").count() == issued


def test_within_the_grace_a_booking_stays_scheduled(post):
    post(URL["created"], CREATED)
    post(URL["started"], STARTED)

    body = post(URL["ended"], ended_later(hours=2)).json()

    assert Booking.objects.get(external_id="BK789").status == BookingStatus.SCHEDULED
    assert [a["booking_id"] for a in body["affected_bookings"]] == ["BK789"]


def test_a_late_start_of_a_no_show_still_applies(post):
    post(URL["created"], CREATED)
    post(URL["started"], STARTED)
    post(URL["ended"], ended_later(hours=30))

    late = post(
        URL["started"],
        {
            "booking_id": "BK789",
            "vehicle_id": 78,
            "actual_battery_at_start": 47.0,
            "actual_started_at": "2025-11-05T05:00:00Z",
        },
    ).json()

    assert late["status"] == "success" and late["booking_status"] == "active"
    assert any("no-show" in note for note in late["notes"])
    booking = Booking.objects.get(external_id="BK789")
    assert booking.status == BookingStatus.ACTIVE and booking.battery_at_start == 47.0


def test_the_hourly_task_marks_no_shows_of_quiet_cars_by_the_fleet_clock(
    post, settings, django_capture_on_commit_callbacks
):
    post(URL["created"], CREATED)  # BK123456 at 2025-11-03 19:00, on car 78, which then goes quiet
    other = {
        **CREATED,
        "booking_id": "X1",
        "vehicle_id": 5,
        "starts_at": "2025-11-10T10:00:00Z",
        "ends_at": "2025-11-10T12:00:00Z",
        "current_timestamp": "2025-11-04T20:00:00Z",
    }
    with django_capture_on_commit_callbacks(execute=True):  # the committed reading moves the cached clock
        post(URL["created"], other)  # another car reports a day later: the fleet's clock moves past the grace
    settings.NO_SHOW_GRACE_HOURS = 0
    assert no_shows_mark() == 0  # 0: the rule is off
    settings.NO_SHOW_GRACE_HOURS = 24

    assert no_shows_mark() == 1

    assert Booking.objects.get(external_id="BK123456").status == BookingStatus.NO_SHOW
    assert Booking.objects.get(external_id="X1").status == BookingStatus.SCHEDULED


def test_no_shows_are_listed_in_the_admin(post, admin_client):
    post(URL["created"], CREATED)
    Booking.objects.filter(external_id="BK123456").update(status=BookingStatus.NO_SHOW)

    page = admin_client.get("/admin/bookings/booking/?status__exact=no_show")

    assert page.status_code == 200
    assert "BK123456" in page.content.decode() and "No-show" in page.content.decode()


# --- 4xx, not 500, and nothing written ----------------------------------------------------------


def test_a_booking_listed_twice_in_future_bookings_is_a_400_naming_it(post):
    post(URL["created"], CREATED)
    before = table_counts()
    twice = [FUTURE[0], {**FUTURE[0], "starts_at": "2025-11-04T08:00:00Z", "ends_at": "2025-11-04T09:00:00Z"}]

    response = post(URL["started"], {**STARTED, "future_bookings": twice})

    assert response.status_code == 400, response.content
    assert response.json()["detail"].startswith("future_bookings.1.booking_id: Listed twice")
    assert table_counts() == before


def test_moving_the_end_of_an_early_started_booking_before_its_scheduled_start_is_a_400(post):
    post(URL["created"], CREATED)  # booked 19:00 to 21:00
    post(URL["started"], {**STARTED, "actual_started_at": "2025-11-03T17:00:00Z"})  # picked up two hours early
    before = table_counts()

    response = post(
        URL["modified"], {**MODIFIED, "new_starts_at": "2025-11-03T17:00:00Z", "new_ends_at": "2025-11-03T18:30:00Z"}
    )

    assert response.status_code == 400, response.content
    assert list(response.json()["fields"]) == ["new_ends_at"]
    assert table_counts() == before
    assert not InboundEvent.objects.filter(event_type="booking.modified").exists()
    assert BatteryReading.objects.filter(source="booking_started").count() == 1
