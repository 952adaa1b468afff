"""The car's and renters' model features are kept per process until they learn another outcome, never served stale."""

from datetime import UTC, datetime, timedelta

import pytest

from bookings.models import Vehicle
from core.features import Outcome, replay
from learning import feature_cache
from learning.feature_cache import feature_states_forget
from learning.selectors import feature_book_for, user_patterns_for
from tests.modelling import outcomes_store
from tests.seed_examples import CREATED, ENDED, STARTED, URL

pytestmark = pytest.mark.django_db


def ride(post, booking_id: str, day: int, end_level: float) -> None:
    """One booking of car 78 by renter 860 through created, started and ended."""
    at = f"2025-11-{day:02d}T"
    times = {"starts_at": at + "09:00:00Z", "ends_at": at + "11:00:00Z"}
    created = {**CREATED, "booking_id": booking_id, **times, "current_timestamp": at + "08:00:00Z"}
    started = {**STARTED, "booking_id": booking_id, "actual_started_at": at + "09:05:00Z", "future_bookings": []}
    ended = {**ENDED, "booking_id": booking_id, "starts_at": at + "09:05:00Z", "ends_at": at + "10:50:00Z"}
    ended.update(battery_at_end=end_level, future_bookings=[])
    for url, body in ((URL["created"], created), (URL["started"], started), (URL["ended"], ended)):
        assert post(url, body).status_code == 200, post(url, body).json()


def book_now(user_ids=("860",)):
    return feature_book_for(vehicle=Vehicle.objects.get(external_id="78"), user_ids=list(user_ids))


def replayed(user_ids=("860",)):
    feature_states_forget()
    return book_now(user_ids)


def test_a_car_and_a_renter_priced_again_are_not_replayed(post, django_assert_num_queries):
    ride(post, "B1", 3, 48.0)
    first = book_now()
    vehicle = Vehicle.objects.select_related("pattern").get(external_id="78")  # as a prediction reads it
    users = user_patterns_for(["860"])

    with django_assert_num_queries(0):  # no outcome is read again
        again = feature_book_for(vehicle=vehicle, user_ids=["860"], users=users)

    assert again.car("78") == first.car("78") == replayed().car("78")
    assert again.renter("860") == first.renter("860") == replayed().renter("860")
    assert first.car("78").trips == 1 and first.renter("860").trips == 1


def test_an_outcome_learned_since_is_in_the_next_features(post):
    ride(post, "B1", 3, 48.0)
    before = book_now()

    ride(post, "B2", 4, 30.0)
    after = book_now()

    assert after.car("78").trips == before.car("78").trips + 1
    assert after.renter("860").trips == before.renter("860").trips + 1
    assert after.car("78").last_end_level == 30.0
    assert after.car("78") == replayed().car("78")
    assert after.renter("860") == replayed().renter("860")


def test_a_renter_without_outcomes_gets_the_empty_state(post):
    ride(post, "B1", 3, 48.0)

    book = book_now(("860", "nobody"))

    assert book.renter("nobody").trips == 0 and book.renter("860").trips == 1


def test_a_renter_and_a_car_without_a_pattern_cost_no_query(post, django_assert_num_queries):
    """No pattern means no outcome (an outcome's signal makes both), so nothing is replayed for them."""
    ride(post, "B1", 3, 48.0)
    vehicle = Vehicle.objects.select_related("pattern").get(external_id="78")
    feature_book_for(vehicle=vehicle, user_ids=["860"], users=user_patterns_for(["860"]))  # kept now
    users = user_patterns_for(["860", "new-renter"])
    assert "new-renter" not in users

    with django_assert_num_queries(0):
        book = feature_book_for(vehicle=vehicle, user_ids=["860", "new-renter"], users=users)
    new_car = Vehicle.objects.create(external_id="new-car")
    with django_assert_num_queries(0):
        fresh = feature_book_for(vehicle=new_car, user_ids=[], pattern=None)

    assert book.renter("new-renter") == replayed(("860", "new-renter")).renter("new-renter")
    assert book.renter("new-renter").trips == 0 and book.renter("860").trips == 1
    assert fresh.car("new-car").trips == 0


def test_a_newer_state_replaces_the_older_so_memory_holds_one_per_car_and_renter(post):
    ride(post, "B1", 3, 48.0)
    book_now()
    ride(post, "B2", 4, 30.0)
    book_now()

    assert len(feature_cache._cars) == 1 and len(feature_cache._renters) == 1


def test_a_renters_served_habit_is_the_training_replays_when_another_renter_showed_the_car_can_charge():
    """The renter's outcomes alone would not show that car "B" has a charger (only renter 2 ever plugged it in);
    serving reads that from the database, so the habit is the one training learns from the whole history."""
    at = datetime(2026, 3, 2, 8, tzinfo=UTC)

    def outcome(car: str, user: str, day: int, charging: bool) -> Outcome:
        start = at + timedelta(days=day)
        return Outcome(car, user, start, start + timedelta(hours=2), 80.0, 60.0, charging)

    history = [
        outcome("B", "2", 0, True),
        outcome("A", "1", 1, True),
        outcome("B", "1", 2, False),  # a car that can charge, left unplugged: counts against renter 1
        outcome("C", "1", 3, False),  # never charged by anyone: says nothing
        outcome("C", "2", 4, False),
    ]
    outcomes_store(history)
    trained = replay(history)[2].renter("1")

    served = feature_book_for(vehicle=Vehicle.objects.get(external_id="A"), user_ids=["1"]).renter("1")

    assert served == trained
    assert served.plug_returns == 2 and served.plug == pytest.approx(0.5) and served.trips == 3
