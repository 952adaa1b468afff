"""POST /api/v1/predict (both modes), the batch endpoint and a booking's current prediction."""

from datetime import timedelta

import pytest

from bookings.models import BatteryReading, ReadingSource
from predictions.models import Prediction
from tests.factories import T0, BatteryReadingFactory, BookingFactory, VehicleFactory
from tests.seed_examples import CREATED, PREDICT_HISTORICAL, PREDICT_REAL_TIME, URL

pytestmark = pytest.mark.django_db

RESPONSE_KEYS = {
    "booking_id",
    "vehicle_id",
    "predicted_battery_percentage",
    "confidence_interval",
    "prediction_method",
    "cascade_steps",
    "timestamp",
}


def test_real_time_mode_with_the_seeds_example(post):
    response = post(URL["predict"], PREDICT_REAL_TIME)

    assert response.status_code == 200, response.json()
    body = response.json()
    assert set(body) >= RESPONSE_KEYS
    assert body["booking_id"] == "BK123456" and body["vehicle_id"] == "78"
    assert body["prediction_method"] == "pattern_real_time_cascade"
    assert body["confidence_interval"]["confidence_level"] == 0.95
    ci = body["confidence_interval"]
    assert ci["lower"] <= body["predicted_battery_percentage"] <= ci["upper"]
    steps = body["cascade_steps"]
    assert [s["type"] for s in steps] == ["idle", "booking", "idle"]
    assert [s["duration_hours"] for s in steps] == [1.0, 2.0, 28.0]
    # The steps chain: each starts where the last ended, and the last is the prediction.
    level = 65.5
    for step in steps:
        assert step["battery_after"] == pytest.approx(level + step["battery_change"], abs=0.02)
        level = step["battery_after"]
    assert level == pytest.approx(body["predicted_battery_percentage"], abs=0.02)
    assert steps[1]["battery_change"] < -5  # a two-hour trip drains the car
    reading = BatteryReading.objects.get()
    assert reading.level == 65.5 and reading.source == ReadingSource.PREDICT_REQUEST


def test_real_time_without_intermediate_bookings_is_real_time(post):
    body = post(URL["predict"], {**PREDICT_REAL_TIME, "intermediate_bookings": []}).json()

    assert body["prediction_method"] == "pattern_real_time"
    assert [s["type"] for s in body["cascade_steps"]] == ["idle"]


def test_historical_mode_starts_from_the_last_known_reading_and_known_bookings(post):
    vehicle = VehicleFactory(external_id="78")
    BatteryReadingFactory(vehicle=vehicle, level=90.0, recorded_at=T0, charging=False)
    BookingFactory(
        vehicle=vehicle,
        external_id="BEFORE",
        scheduled_start=T0 + timedelta(hours=2),
        scheduled_end=T0 + timedelta(hours=5),
    )

    body = post(URL["predict"], PREDICT_HISTORICAL).json()

    assert body["prediction_method"] == "pattern_historical"
    steps = body["cascade_steps"]
    assert [s["type"] for s in steps] == ["idle", "booking", "idle"]
    assert steps[0]["starts_at"] == "2025-11-03T08:00:00Z"
    assert steps[1]["booking_id"] == "BEFORE"
    assert body["predicted_battery_percentage"] < 90.0


def test_historical_mode_for_a_car_never_heard_of_is_honestly_uncertain(post):
    body = post(URL["predict"], PREDICT_HISTORICAL).json()

    assert body["prediction_method"] == "pattern_historical"
    ci = body["confidence_interval"]
    assert ci["upper"] - ci["lower"] > 60


def test_more_certain_right_after_a_reading_than_days_later(post):
    near = post(
        URL["predict"], {**PREDICT_REAL_TIME, "intermediate_bookings": [], "booking_start_time": "2025-11-02T13:00:00Z"}
    ).json()
    far = post(
        URL["predict"],
        {
            **PREDICT_REAL_TIME,
            "intermediate_bookings": [],
            "booking_start_time": "2025-11-06T13:00:00Z",
            "booking_id": "B2",
        },
    ).json()

    def width(body):
        return body["confidence_interval"]["upper"] - body["confidence_interval"]["lower"]

    assert width(near) < width(far)


def test_every_prediction_is_kept_and_the_latest_is_current(api, post):
    first = post(URL["predict"], PREDICT_REAL_TIME).json()
    second = post(URL["predict"], {**PREDICT_REAL_TIME, "current_battery_level": 30.0}).json()

    assert Prediction.objects.filter(booking_external_id="BK123456").count() == 2
    current = api.get("/api/v1/predictions/BK123456").json()
    assert current["prediction_id"] == second["prediction_id"] != first["prediction_id"]
    assert current["predicted_battery_percentage"] == second["predicted_battery_percentage"]
    assert current["status"] == "pending" and current["actual_battery"] is None


def test_current_prediction_of_an_unknown_booking_is_404(api):
    response = api.get("/api/v1/predictions/NOPE")

    assert response.status_code == 404
    assert response.json()["status"] == "error"


def test_predicting_a_booking_on_the_wrong_car_is_a_409(post):
    post(URL["created"], CREATED)

    response = post(URL["predict"], {**PREDICT_REAL_TIME, "vehicle_id": "79"})

    assert response.status_code == 409
    assert "vehicle_id" in response.json()["fields"]


def test_batch_predicts_many_bookings_in_one_call(post):
    items = [{**PREDICT_REAL_TIME, "booking_id": f"B{i}", "vehicle_id": str(i % 3)} for i in range(12)]

    response = post(URL["batch"], {"bookings": items})

    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 12
    assert [p["booking_id"] for p in body["predictions"]] == [f"B{i}" for i in range(12)]
    assert all(set(p) >= RESPONSE_KEYS for p in body["predictions"])
    assert Prediction.objects.count() == 12


def test_a_bad_item_fails_the_whole_batch_naming_it(post):
    items = [PREDICT_REAL_TIME, {**PREDICT_REAL_TIME, "current_battery_level": 140}]

    response = post(URL["batch"], {"bookings": items})

    assert response.status_code == 400
    error = response.json()
    assert error["fields"]["bookings"]["1"] == {
        "current_battery_level": ["Ensure this value is less than or equal to 100.0."]
    }
    assert error["detail"] == "bookings.1.current_battery_level: Ensure this value is less than or equal to 100.0."
    assert Prediction.objects.count() == 0


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"current_battery_level": 100.01}, "current_battery_level"),
        ({"current_battery_level": -5}, "current_battery_level"),
        ({"booking_start_time": "2025-11-03 19:00"}, "booking_start_time"),
        ({"booking_start_time": "next tuesday"}, "booking_start_time"),
        ({"current_timestamp": "2099-11-04T12:00:00Z"}, "current_timestamp"),
        ({"vehicle_id": None}, "vehicle_id"),
        ({"vehicle_id": 1.5}, "vehicle_id"),
        (
            {"intermediate_bookings": [{"starts_at": "2025-11-02T15:00:00Z", "ends_at": "2025-11-02T13:00:00Z"}]},
            "intermediate_bookings",
        ),
        (
            {"intermediate_bookings": [{"starts_at": "2025-11-02T15:00:00Z", "ends_at": "2025-11-04T13:00:00Z"}]},
            "intermediate_bookings",
        ),
        ({"current_battery_level": None}, "current_battery_level"),
    ],
)
def test_bad_predict_input_is_a_400_and_writes_nothing(post, change, field):
    response = post(URL["predict"], {**PREDICT_REAL_TIME, **change})

    assert response.status_code == 400, response.json()
    assert field in response.json()["fields"]
    assert Prediction.objects.count() == 0 and BatteryReading.objects.count() == 0


def test_a_missing_required_field_is_named(post):
    response = post(URL["predict"], {"vehicle_id": "78"})

    assert response.status_code == 400
    assert response.json()["fields"] == {"booking_start_time": ["This field is required."]}
