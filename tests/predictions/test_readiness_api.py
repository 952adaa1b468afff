"""Readiness (issue 16) through the HTTP API: what a booking needs, the chance the car has it, and what it takes."""

from datetime import datetime, timedelta
from itertools import pairwise

import pytest

from bookings.models import Booking
from common.process_cache import forget_all
from core.physics import charge_hours
from core.readiness import LevelDistribution, Requirement, charge_for_deadline, probability_ready
from predictions.models import Prediction
from tests.factories import PredictionFactory, UserPatternFactory, VehicleFactory, VehiclePatternFactory
from tests.seed_examples import CREATED, MODIFIED, URL

pytestmark = pytest.mark.django_db

NOW = "2025-11-03T08:00:00Z"
PICKUP = "2025-11-03T20:00:00Z"  # 12 hours later


def predict(post, *, level: float = 50.0, start: str = PICKUP, **need) -> dict:
    body = {
        "vehicle_id": "78",
        "user_id": "860",
        "booking_id": "BK1",
        "booking_start_time": start,
        "current_battery_level": level,
        "current_timestamp": NOW,
        "intermediate_bookings": [],
        **need,
    }
    response = post(URL["predict"], body)
    assert response.status_code == 200, response.json()
    return response.json()


def at(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def recomputed(body: dict, *, shift: float = 0.0, std: float = 0.0) -> float:
    """The probability from the body's own numbers, with the pure function."""
    ci = body["confidence_interval"]
    level = body.get("predicted_battery_percentage", body.get("predicted_battery"))
    dist = LevelDistribution.from_interval(level, ci["lower"], ci["upper"]).shifted(shift)
    return probability_ready(dist, Requirement(body["readiness"]["required_level"], std))


def test_required_battery_is_what_the_booking_needs_and_the_probability_comes_from_the_interval(post):
    body = predict(post, required_battery=40)

    readiness = body["readiness"]
    assert set(readiness) == {"required_level", "probability_ready", "at_risk", "charge_needed", "plug_in_by"}
    assert readiness["required_level"] == 40.0
    assert 0.5 < readiness["probability_ready"] < 1.0  # the car is predicted near 50 %, above 40
    assert readiness["probability_ready"] == pytest.approx(recomputed(body), abs=1e-4)
    stored = Prediction.objects.get(prediction_id=body["prediction_id"])
    assert (stored.required_level, stored.probability_ready) == (40.0, readiness["probability_ready"])


def test_without_a_need_the_fleet_rule_applies(post, settings):
    assert predict(post)["readiness"]["required_level"] == 25.0

    settings.READINESS_MIN_LEVEL = 45.0
    assert predict(post)["readiness"]["required_level"] == 45.0


def test_a_distance_is_turned_into_a_level_with_the_cars_and_the_renters_drain_per_km(post):
    vehicle = VehicleFactory(external_id="78")
    VehiclePatternFactory(vehicle=vehicle, avg_drain_rate_per_km=0.2, var_drain_rate_per_km=0.0025, km_observations=997)
    # The only car that reported mileage is the fleet's per-km average too, so nothing shrinks it.
    car_rate = 0.2

    body = predict(post, planned_distance_km=100)

    assert body["readiness"]["required_level"] == pytest.approx(100 * car_rate, abs=0.01)
    # The requirement's own spread (sd of drain per km x distance) makes a requirement below the level less sure.
    std = 100 * 0.05
    assert body["readiness"]["probability_ready"] == pytest.approx(recomputed(body, std=std), abs=1e-3)
    same_level = predict(post, required_battery=body["readiness"]["required_level"])
    assert body["readiness"]["probability_ready"] < same_level["readiness"]["probability_ready"]

    UserPatternFactory(user_id="860", avg_drain_rate_per_km=0.4, var_drain_rate_per_km=0.0, km_observations=3)
    heavy_foot = predict(post, planned_distance_km=100)
    assert heavy_foot["readiness"]["required_level"] == pytest.approx(100 * (0.75 * car_rate + 0.25 * 0.4), abs=0.01)


def test_a_higher_requirement_gives_a_lower_probability(post):
    probabilities = [predict(post, required_battery=r)["readiness"]["probability_ready"] for r in (10, 35, 50, 65, 90)]

    assert all(higher < lower for lower, higher in pairwise(probabilities))
    assert probabilities[0] > 0.95 and probabilities[-1] < 0.1  # it may have been plugged in: a long upper side


def test_at_risk_flips_at_the_threshold(post, settings):
    probability = predict(post, required_battery=45)["readiness"]["probability_ready"]
    assert 0.05 < probability < 0.95

    settings.READINESS_RISK_THRESHOLD = probability - 0.01
    safe = predict(post, required_battery=45)["readiness"]
    assert (safe["at_risk"], safe["charge_needed"], safe["plug_in_by"]) == (False, 0.0, None)

    settings.READINESS_RISK_THRESHOLD = probability + 0.01
    risky = predict(post, required_battery=45)["readiness"]
    assert risky["at_risk"] is True and risky["charge_needed"] > 0


def test_charge_needed_brings_the_probability_to_the_threshold(post, settings):
    body = predict(post, required_battery=60)
    readiness = body["readiness"]

    assert readiness["at_risk"] is True and readiness["probability_ready"] < 0.9
    assert recomputed(body, shift=readiness["charge_needed"]) >= 0.9
    assert recomputed(body, shift=readiness["charge_needed"] - 0.1) < 0.9  # and no more than that


def test_plug_in_by_leaves_the_time_the_learned_charging_rate_takes(post):
    vehicle = VehicleFactory(external_id="78")
    VehiclePatternFactory(vehicle=vehicle, avg_charging_rate_per_hour=6.0, charge_observations=997)
    rate = 6.0  # the only car that charged is the fleet's average too, so nothing shrinks it

    body = predict(post, required_battery=60)

    readiness = body["readiness"]
    level = body["predicted_battery_percentage"]
    plug_in_by, pickup = at(readiness["plug_in_by"]), at(body["booking_start_time"])
    assert at(NOW) <= plug_in_by < pickup
    hours = charge_hours(level, level + readiness["charge_needed"], rate)
    assert 0 <= (pickup - plug_in_by).total_seconds() - hours * 3600 < 60  # rounded down to the minute
    assert readiness["plug_in_by"].endswith(":00Z")


def test_plug_in_by_counts_on_the_lower_of_the_cars_own_rate_and_the_fleet_shrunk_one(post):
    """A deadline too late leaves the car short; one too early only has it wait on the charger."""
    fleet = VehicleFactory(external_id="fleet")
    VehiclePatternFactory(vehicle=fleet, avg_charging_rate_per_hour=12.0, charge_observations=50)
    vehicle = VehicleFactory(external_id="78")
    VehiclePatternFactory(vehicle=vehicle, avg_charging_rate_per_hour=2.0, charge_observations=1)
    # The fleet's average is (12 + 2) / 2 = 7; shrunk towards it with one charge seen the car's rate is
    # (2 + 3 x 7) / 4 = 5.75: the deadline counts on the car's own 2, with the widest margin for what the
    # charger delivers (the fleet's spread of 1 %/h at the least, half of 2 %/h).

    body = predict(post, level=30.0, start="2025-11-05T08:00:00Z", required_battery=35)

    readiness, ci = body["readiness"], body["confidence_interval"]
    level = body["predicted_battery_percentage"]
    dist = LevelDistribution.from_interval(level, ci["lower"], ci["upper"])
    planned = charge_for_deadline(dist, Requirement(35.0), 0.9, spread=0.5)
    assert planned > readiness["charge_needed"]
    left = (at(body["booking_start_time"]) - at(readiness["plug_in_by"])).total_seconds()
    assert 0 <= left - charge_hours(level, level + planned, 2.0) * 3600 < 60


def test_a_car_not_yet_seen_charging_counts_on_the_rate_nine_cars_in_ten_of_the_fleet_reach(post):
    """The fleet's cars charge at 3 to 12 %/h; the 10th percentile of those rates is 3.9 (the threshold is 0.9).
    A car never seen charging gets a deadline at that rate, not at the fleet's average of 7.5. Once it is seen
    charging at 20 %/h, the fleet's 10th percentile is 4.0, and the car is trusted upwards only as far as its
    one charge shrunk towards that: (20 + 3 x 4) / 4 = 8."""
    for i, rate in enumerate(range(3, 13)):
        fleet_car = VehicleFactory(external_id=f"F{i}")
        VehiclePatternFactory(
            vehicle=fleet_car,
            avg_charging_rate_per_hour=float(rate),
            var_charging_rate_per_hour=1.0,
            charge_observations=50,
        )

    def counted_on(body: dict) -> float:
        """The rate whose charging time from the predicted level is the time the deadline leaves (sd 1 %/h)."""
        readiness, ci = body["readiness"], body["confidence_interval"]
        level = body["predicted_battery_percentage"]
        dist = LevelDistribution.from_interval(level, ci["lower"], ci["upper"])
        left = (at(body["booking_start_time"]) - at(readiness["plug_in_by"])).total_seconds()
        for rate in (3.9, 7.5, 8.0, 20.0):
            planned = charge_for_deadline(dist, Requirement(60.0), 0.9, spread=1.0 / rate)
            if 0 <= left - charge_hours(level, level + planned, rate) * 3600 < 60:
                return rate
        raise AssertionError(f"no rate leaves {left} s")

    assert counted_on(predict(post, required_battery=60)) == 3.9

    VehiclePatternFactory(
        vehicle=VehicleFactory(external_id="78"), avg_charging_rate_per_hour=20.0, charge_observations=1
    )
    forget_all()  # the fleet prior is kept for a minute: read the fleet with the car in it
    assert counted_on(predict(post, required_battery=60)) == 8.0


def test_plug_in_by_is_null_when_no_charge_is_needed_or_it_cannot_be_reached(post):
    assert predict(post, required_battery=20)["readiness"]["plug_in_by"] is None  # not at risk

    full = predict(post, required_battery=100)["readiness"]
    assert full["at_risk"] and full["charge_needed"] > 0 and full["plug_in_by"] is None  # beyond 100 %

    soon = (at(NOW) + timedelta(minutes=20)).isoformat().replace("+00:00", "Z")
    late = predict(post, start=soon, required_battery=75)["readiness"]
    assert late["at_risk"] and late["plug_in_by"] is None  # 25 points in 20 minutes: the time has passed


def test_plug_in_by_is_null_when_the_need_is_above_the_cars_charge_limit(post):
    vehicle = VehicleFactory(external_id="78")
    pattern = VehiclePatternFactory(vehicle=vehicle, avg_charging_rate_per_hour=10.0, charge_observations=5)
    free = predict(post, level=70.0, required_battery=75)["readiness"]
    assert free["at_risk"] and free["plug_in_by"] is not None  # 12 hours: time enough to charge past 90 %

    pattern.charge_ceiling = 80.0
    pattern.save()
    limited = predict(post, level=70.0, required_battery=75)["readiness"]

    assert limited["at_risk"] and limited["charge_needed"] > 0 and limited["plug_in_by"] is None


@pytest.mark.parametrize(
    ("need", "fields"),
    [
        ({"required_battery": 40, "planned_distance_km": 50}, {"required_battery", "planned_distance_km"}),
        ({"required_battery": 101}, {"required_battery"}),
        ({"required_battery": -1}, {"required_battery"}),
        ({"planned_distance_km": -5}, {"planned_distance_km"}),
        ({"planned_distance_km": "far"}, {"planned_distance_km"}),
    ],
)
def test_a_bad_need_is_a_400_naming_the_fields_and_stores_nothing(post, need, fields):
    predicted = post(URL["predict"], {"vehicle_id": "78", "booking_start_time": PICKUP, **need})
    created = post(URL["created"], {**CREATED, **need})

    for response in (predicted, created):
        assert response.status_code == 400, response.json()
        assert set(response.json()["fields"]) == fields
    assert Prediction.objects.count() == 0 and Booking.objects.count() == 0


def test_booking_events_store_the_need_and_a_modification_keeps_or_replaces_it(post):
    created = post(URL["created"], {**CREATED, "required_battery": 70}).json()
    assert created["readiness"]["required_level"] == 70.0
    booking = Booking.objects.get(external_id="BK123456")
    assert (booking.required_battery, booking.planned_distance_km) == (70.0, None)

    kept = post(URL["modified"], MODIFIED).json()
    [own] = [a for a in kept["affected_bookings"] if a["booking_id"] == "BK123456"]
    assert own["readiness"]["required_level"] == 70.0
    booking.refresh_from_db()
    assert booking.required_battery == 70.0

    moved = {**MODIFIED, "new_starts_at": "2025-11-03T17:00:00Z", "planned_distance_km": 50}
    replaced = post(URL["modified"], moved).json()
    [own] = [a for a in replaced["affected_bookings"] if a["booking_id"] == "BK123456"]
    assert own["readiness"]["required_level"] == pytest.approx(50 * 0.32)  # the fleet's default drain per km
    booking.refresh_from_db()
    assert (booking.required_battery, booking.planned_distance_km) == (None, 50.0)

    # A predict request's need is for its own answer; the booking keeps what its events said.
    asked = predict(post, booking_id="BK123456", start="2025-11-03T17:00:00Z", required_battery=90)
    assert asked["readiness"]["required_level"] == 90.0
    booking.refresh_from_db()
    assert booking.planned_distance_km == 50.0
    unasked = predict(post, booking_id="BK123456", start="2025-11-03T17:00:00Z")
    assert unasked["readiness"]["required_level"] == pytest.approx(50 * 0.32)  # the booking's stored need


def test_readiness_is_in_affected_bookings_batch_and_the_current_prediction(post, api):
    post(
        URL["created"],
        {
            **CREATED,
            "booking_id": "LATER",
            "starts_at": "2025-11-04T08:00:00Z",
            "ends_at": "2025-11-04T09:00:00Z",
            "required_battery": 80,
        },
    )
    created = post(URL["created"], CREATED).json()

    [later] = created["affected_bookings"]
    assert later["readiness"]["required_level"] == 80.0  # the later booking's own stored need
    assert later["readiness"]["probability_ready"] == pytest.approx(recomputed(later), abs=1e-4)
    assert created["readiness"]["required_level"] == 25.0

    current = api.get("/api/v1/predictions/LATER").json()
    assert current["readiness"] == later["readiness"]

    batch = post(
        URL["batch"],
        {
            "bookings": [
                {"vehicle_id": "78", "booking_start_time": PICKUP, "required_battery": 30},
                {"vehicle_id": "79", "booking_start_time": PICKUP, "planned_distance_km": 10},
                {"vehicle_id": "80", "booking_start_time": PICKUP},
            ]
        },
    )
    assert batch.status_code == 200, batch.json()
    levels = [p["readiness"]["required_level"] for p in batch.json()["predictions"]]
    assert levels == [30.0, pytest.approx(3.2), 25.0]

    both = post(
        URL["batch"],
        {
            "bookings": [
                {
                    "vehicle_id": "78",
                    "booking_start_time": PICKUP,
                    **{"required_battery": 30, "planned_distance_km": 10},
                }
            ]
        },
    )
    assert both.status_code == 400 and set(both.json()["fields"]["bookings"]["0"]) == {
        "required_battery",
        "planned_distance_km",
    }


def test_a_prediction_stored_before_readiness_reads_back_null(api):
    PredictionFactory(booking__external_id="OLD")

    body = api.get("/api/v1/predictions/OLD").json()

    assert body["readiness"] is None
