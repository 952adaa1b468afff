"""A repeated historical /predict is answered with the booking's stored prediction while nothing it used changed.

Everything goes through the HTTP API: the events and the real-time predicts that change a car are Laravel's own calls.
"""

from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from bookings.models import Vehicle
from predictions.models import Prediction
from tests.seed_examples import CREATED, PREDICT_HISTORICAL, PREDICT_REAL_TIME, URL

pytestmark = pytest.mark.django_db


@pytest.fixture
def known(post):
    """Car 78 with booking BK123456 (19:00 on 3 Nov), its level 65.5 % reported 31 h before."""
    assert post(URL["created"], CREATED).status_code == 200
    return post


def ask(post, body=PREDICT_HISTORICAL) -> dict:
    response = post(URL["predict"], body)
    assert response.status_code == 200, response.json()
    return response.json()


def test_the_same_question_again_is_answered_with_the_stored_prediction_and_stores_nothing(known):
    first = ask(known)
    stored = Prediction.objects.count()

    again = ask(known)

    assert again == first  # the same prediction_id, timestamp, level, interval, steps and readiness
    assert Prediction.objects.count() == stored
    assert (
        Prediction.objects.get(is_current=True, booking_external_id="BK123456").prediction_id == first["prediction_id"]
    )


def test_an_event_for_the_car_makes_the_next_answer_fresh(known):
    first = ask(known)
    revision = Vehicle.objects.get(external_id="78").revision

    other = {**CREATED, "booking_id": "OTHER", "starts_at": "2025-11-03T08:00:00Z", "ends_at": "2025-11-03T10:00:00Z"}
    assert known(URL["created"], other).status_code == 200
    again = ask(known)

    assert Vehicle.objects.get(external_id="78").revision > revision
    assert again["prediction_id"] != first["prediction_id"]
    assert "OTHER" in [step.get("booking_id") for step in again["cascade_steps"]]  # the new booking is driven


def test_a_level_reported_by_a_real_time_predict_makes_the_next_historical_answer_fresh(known):
    first = ask(known)

    ask(known, {**PREDICT_REAL_TIME, "current_battery_level": 20.0, "current_timestamp": "2025-11-03T10:00:00Z"})
    again = ask(known)

    assert again["prediction_id"] != first["prediction_id"]
    start = again["cascade_steps"][0]
    assert start["starts_at"] == "2025-11-03T10:00:00Z"  # it starts from the newer level
    assert start["battery_after"] - start["battery_change"] == pytest.approx(20.0, abs=0.02)
    assert again["predicted_battery_percentage"] < first["predicted_battery_percentage"]


def test_a_real_time_answer_is_never_reused_for_a_historical_question(known):
    real_time = ask(known, {**PREDICT_REAL_TIME, "intermediate_bookings": []})

    historical = ask(known)

    assert historical["prediction_id"] != real_time["prediction_id"]
    assert historical["prediction_method"] == "pattern_historical"


@pytest.mark.parametrize(
    "change",
    [
        {"user_id": "861"},
        {"booking_start_time": "2025-11-03T20:00:00Z"},
        {"required_battery": 50},
        {"planned_distance_km": 80},
    ],
    ids=["another renter", "another start", "a need", "a distance"],
)
def test_another_question_about_the_booking_is_answered_fresh(known, change):
    first = ask(known)

    other = ask(known, {**PREDICT_HISTORICAL, **change})

    assert other["prediction_id"] != first["prediction_id"]


def test_an_answer_older_than_the_reuse_window_is_made_again(known, settings):
    settings.PREDICTION_REUSE_SECONDS = 60
    first = ask(known)

    with time_machine.travel(timezone.now() + timedelta(seconds=30), tick=False):
        assert ask(known)["prediction_id"] == first["prediction_id"]
    with time_machine.travel(timezone.now() + timedelta(seconds=61), tick=False):
        again = ask(known)

    assert again["prediction_id"] != first["prediction_id"]
    assert again["predicted_battery_percentage"] == first["predicted_battery_percentage"]  # nothing else changed


def test_a_pickup_that_has_moved_into_another_lead_time_is_answered_fresh(known, settings):
    settings.FLEET_CLOCK_CACHE_SECONDS = 0  # the fleet's clock read afresh, as another process would after 5 s
    first = ask(known)
    first_key = Prediction.objects.get(prediction_id=first["prediction_id"]).calibration_key
    assert first_key.endswith("|24-72h")

    # Another car reports a level 4 hours before the pick-up: the fleet's present moves past it.
    elsewhere = {"vehicle_id": "79", "booking_id": "ELSEWHERE", "current_timestamp": "2025-11-03T15:00:00Z"}
    ask(known, {**PREDICT_REAL_TIME, **elsewhere})
    again = ask(known)

    assert again["prediction_id"] != first["prediction_id"]
    assert Prediction.objects.get(prediction_id=again["prediction_id"]).calibration_key.endswith("|<6h")


def test_reuse_turned_off_answers_every_question_afresh(known, settings):
    settings.PREDICTION_REUSE_SECONDS = 0

    assert ask(known)["prediction_id"] != ask(known)["prediction_id"]


def test_a_batch_reuses_its_own_answers_not_those_of_a_single_predict(known):
    single = ask(known)
    batch = {"bookings": [PREDICT_HISTORICAL]}

    first = known(URL["batch"], batch).json()["predictions"][0]
    again = known(URL["batch"], batch).json()["predictions"][0]

    assert first["prediction_id"] != single["prediction_id"]  # calibrated as a batch answer, not a predict one
    assert again == first
