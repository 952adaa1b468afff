"""The vehicle timeline and model info endpoints."""

import pytest

from tests.factories import VehicleFactory, VehiclePatternFactory
from tests.seed_examples import CREATED, ENDED, STARTED, URL

pytestmark = pytest.mark.django_db


def test_timeline_shows_readings_bookings_and_their_predictions(api, post):
    post(URL["created"], CREATED)
    post(URL["started"], STARTED)
    post(URL["ended"], ENDED)

    response = api.get("/api/v1/vehicle/78/timeline?days=3650")

    assert response.status_code == 200
    body = response.json()
    assert body["vehicle_id"] == "78"
    assert [r["level"] for r in body["readings"]] == [65.5, 60.5, 48.0]
    assert body["last_reading"]["level"] == 48.0 and body["last_reading"]["source"] == "booking_ended"
    rows = {b["booking_id"]: b for b in body["bookings"]}
    assert rows["BK123456"]["status"] == "completed"
    assert rows["BK123456"]["battery_at_start"] == 60.5
    assert rows["BK123456"]["prediction_error"] == pytest.approx(
        60.5 - rows["BK123456"]["prediction"]["predicted_battery"], abs=0.01
    )
    assert rows["BK789"]["status"] == "scheduled" and rows["BK789"]["prediction"]["booking_id"] == "BK789"
    assert body["pattern"]["total_bookings"] == 1 and body["pattern"]["pattern_confidence"] == "low"


def test_timeline_of_an_unknown_car_is_404_and_bad_days_is_400(api, post):
    assert api.get("/api/v1/vehicle/nope/timeline").status_code == 404
    post(URL["created"], CREATED)
    response = api.get("/api/v1/vehicle/78/timeline?days=0")
    assert response.status_code == 400 and "days" in response.json()["fields"]


def test_model_info_describes_the_serving_model_and_its_accuracy(api, post):
    post(URL["created"], CREATED)
    post(URL["started"], STARTED)

    body = api.get("/api/v1/model/info").json()

    assert body["model_version"] == "pattern-cascade-1.0" and body["status"] == "LOADED"
    assert body["confidence_level"] == 0.95
    assert body["statistics"]["bookings"] == 2 and body["statistics"]["vehicles"] == 1
    assert body["accuracy"]["scored_predictions"] == 1
    assert body["accuracy"]["mae"] > 0


def test_model_info_gives_the_fleets_plugging_habit_on_the_cars_seen_charging(api):
    """Two cars, one without a charger: every return counts for the prior of a car not known yet, and only the
    charger's car's returns for the habit a renter is shrunk towards."""
    VehiclePatternFactory(vehicle=VehicleFactory(external_id="home"), total_bookings=90, total_charges=60)
    VehiclePatternFactory(vehicle=VehicleFactory(external_id="none"), total_bookings=30, total_charges=0)

    prior = api.get("/api/v1/model/info").json()["fleet_prior"]

    assert prior["plug_in_probability"] == pytest.approx((60 + 10 * 0.3) / (120 + 10), abs=1e-4)
    assert prior["plug_in_habit"] == pytest.approx((60 + 10 * 0.3) / (90 + 10), abs=1e-4)
