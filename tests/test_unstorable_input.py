"""Input no column can store is a 400 naming where, on every endpoint, and writes nothing.

Each case here was a 500 on Postgres (which Laravel retries forever): Python's `json` reads `1e999` as infinity
and `NaN`/`Infinity` as themselves, and Postgres `jsonb` refuses them when the event body is stored; a `%00` in a
path id reaches Postgres as a NUL, which no query parameter may hold.
"""

import json

import pytest

from bookings.models import BatteryReading, Booking, InboundEvent
from predictions.models import Prediction
from tests.seed_examples import CANCELLED, CREATED, ENDED, MODIFIED, PREDICT_REAL_TIME, STARTED, URL

pytestmark = pytest.mark.django_db

NUMBER = "__NUMBER__"
TRIP = PREDICT_REAL_TIME["intermediate_bookings"][0]
FUTURE = ENDED["future_bookings"][0]

# (endpoint, body with NUMBER where the literal goes, the path the 400 must name)
PLACES = [
    (
        "predict",
        {**PREDICT_REAL_TIME, "intermediate_bookings": [{**TRIP, "km": NUMBER}]},
        "intermediate_bookings.0.km",
    ),
    (
        "batch",
        {"bookings": [PREDICT_REAL_TIME, {**PREDICT_REAL_TIME, "booking_id": "BK2", "current_battery_level": NUMBER}]},
        "bookings.1.current_battery_level",
    ),
    ("created", {**CREATED, "meta": {"odometer": [1, NUMBER]}}, "meta.odometer.1"),
    ("started", {**STARTED, "actual_battery_at_start": NUMBER}, "actual_battery_at_start"),
    ("ended", {**ENDED, "future_bookings": [{**FUTURE, "note": NUMBER}]}, "future_bookings.0.note"),
    ("modified", {**MODIFIED, "meta": NUMBER}, "meta"),
    ("cancelled", {**CANCELLED, "reason": {"code": NUMBER}}, "reason.code"),
]


def assert_nothing_written() -> None:
    assert not InboundEvent.objects.exists()
    assert not Booking.objects.exists()
    assert not BatteryReading.objects.exists()
    assert not Prediction.objects.exists()


@pytest.mark.parametrize("literal", ["1e999", "-1e999", "NaN", "Infinity", "-Infinity"])
@pytest.mark.parametrize(("endpoint", "body", "where"), PLACES, ids=[place[0] for place in PLACES])
def test_a_number_that_is_not_finite_is_a_400_naming_where(api, endpoint, body, where, literal):
    raw = json.dumps(body).replace(f'"{NUMBER}"', literal).encode()

    response = api.generic("POST", URL[endpoint], raw, content_type="application/json")

    assert response.status_code == 400, response.content
    answer = response.json()
    assert answer["error"] == "parse_error"
    assert list(answer["fields"]) == [where]
    assert "finite" in answer["detail"] and where in answer["detail"]
    assert_nothing_written()


def test_a_top_level_number_that_is_not_finite_names_the_body(api):
    response = api.generic("POST", URL["cancelled"], b"1e999", content_type="application/json")

    assert response.status_code == 400, response.content
    assert list(response.json()["fields"]) == ["body"]


def test_finite_numbers_at_the_edge_of_the_float_range_are_still_read(post):
    """Only what is not finite is refused: 1.7e308 is a number (which validation then judges)."""
    response = post(URL["cancelled"], {**CANCELLED, "meta": {"big": 1.7e308, "tiny": 5e-324}})

    assert response.status_code == 200, response.content
    stored = InboundEvent.objects.get().body["meta"]  # Postgres jsonb gives 1.7e308 back as an int of 309 digits
    assert float(stored["big"]) == 1.7e308 and float(stored["tiny"]) == 5e-324


def test_a_nul_is_named_by_its_path_too(api):
    raw = json.dumps({**CANCELLED, "future_bookings": [{**CANCELLED["future_bookings"][0], "user_id": "9\x00"}]})

    response = api.generic("POST", URL["cancelled"], raw.encode(), content_type="application/json")

    assert response.status_code == 400, response.content
    assert list(response.json()["fields"]) == ["future_bookings.0.user_id"]
    assert_nothing_written()


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/api/v1/predictions/%00", "booking_id"),
        ("/api/v1/predictions/BK1%00x", "booking_id"),
        ("/api/v1/vehicle/%00/timeline", "vehicle_id"),
        ("/api/v1/vehicle/78%00/timeline?days=7", "vehicle_id"),
    ],
)
def test_a_nul_in_a_path_id_is_a_400_naming_the_id(api, path, field):
    response = api.get(path)

    assert response.status_code == 400, response.content
    answer = response.json()
    assert answer["error"] == "validation_error"
    assert list(answer["fields"]) == [field]
    assert "NUL" in answer["detail"]
