"""The fleet simulator: seeded, accepted call for call by the service, and as messy as a real fleet."""

from __future__ import annotations

from datetime import datetime

import pytest

from bookings.models import Booking, BookingStatus
from learning.features import FOUND_CHARGED_GAIN, replay
from learning.models import BookingOutcome
from learning.simulation.fleet import EVENT_PATHS, FleetConfig, Simulation, simulate
from tests.modelling import SMALL_FLEET


@pytest.fixture(scope="module")
def fleet() -> Simulation:
    return simulate(SMALL_FLEET)


def truth(sim: Simulation) -> list[tuple]:
    return [(b.booking_id, b.cancelled, b.actual_start, b.battery_at_start, b.battery_at_end) for b in sim.bookings]


def when(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def test_the_same_seed_gives_the_same_calls_and_truth_and_another_seed_does_not(fleet):
    again = simulate(SMALL_FLEET)
    other = simulate(FleetConfig(cars=SMALL_FLEET.cars, renters=SMALL_FLEET.renters, days=SMALL_FLEET.days, seed=4))

    assert again.calls == fleet.calls
    assert truth(again) == truth(fleet)
    assert again.outcomes() == fleet.outcomes()
    assert other.calls != fleet.calls
    assert truth(other) != truth(fleet)


def test_every_call_of_a_small_fleet_is_accepted_by_the_service(post):
    sim = simulate(FleetConfig(cars=4, renters=10, days=4, seed=1))  # 69 calls, every kind and modification
    assert {c.kind for c in sim.calls} == set(EVENT_PATHS)
    assert {c.body["modification_type"] for c in sim.calls if c.kind == "modified"} == {
        "rescheduled",
        "shortened",
        "extended",
    }

    failures = []
    for call in sim.calls:
        assert call.path == EVENT_PATHS[call.kind]
        response = post(call.path, call.body)
        if response.status_code >= 400:
            failures.append((call.kind, call.booking_id, response.status_code, response.json()))

    assert failures == []
    ended = {c.booking_id for c in sim.calls if c.kind == "ended"}
    cancelled = {c.booking_id for c in sim.calls if c.kind == "cancelled"}
    assert set(BookingOutcome.objects.values_list("booking__external_id", flat=True)) == ended
    assert (
        set(Booking.objects.filter(status=BookingStatus.CANCELLED).values_list("external_id", flat=True)) == cancelled
    )


def test_the_stream_carries_cancellations_and_every_kind_of_modification(fleet):
    kinds = {c.kind for c in fleet.calls}
    modifications = {c.body["modification_type"] for c in fleet.calls if c.kind == "modified"}

    assert kinds == {"created", "started", "ended", "modified", "cancelled", "predict"}
    assert {"rescheduled", "shortened", "extended"} <= modifications


def test_renters_return_late_and_pick_up_late(fleet):
    done = [b for b in fleet.bookings if not b.cancelled]

    assert any(b.actual_end > b.end + 0.25 for b in done)  # back more than 15 minutes after the booked end
    assert any(b.actual_start > b.start + 0.1 for b in done)


def test_real_time_predict_calls_carry_the_current_level(fleet):
    predicts = [c for c in fleet.calls if c.kind == "predict"]

    assert predicts
    for call in predicts:
        assert 0 <= call.body["current_battery_level"] <= 100
        assert when(call.body["current_timestamp"]) == call.at <= when(call.body["booking_start_time"])


def test_bookings_are_made_from_minutes_to_days_ahead(fleet):
    leads = [(when(c.body["starts_at"]) - c.at).total_seconds() / 3600 for c in fleet.calls if c.kind == "created"]

    assert min(leads) < 1.0
    assert max(leads) > 24.0
    assert any(1.0 <= lead <= 24.0 for lead in leads)


def test_some_cars_have_no_charger_and_are_never_returned_plugged_in(fleet):
    unplugged_cars = {c.car_id for c in fleet.cars if c.charger_kw == 0}

    assert unplugged_cars
    assert unplugged_cars != {c.car_id for c in fleet.cars}
    assert not any(o.charging_at_end for o in fleet.outcomes() if o.vehicle_id in unplugged_cars)


def test_staff_recharge_cars_nobody_plugged_in(fleet):
    gaps, _, _ = replay(fleet.outcomes())
    unplugged = [g for g in gaps if not g["charging"]]

    assert unplugged
    assert any(g["target"] > FOUND_CHARGED_GAIN for g in unplugged)  # gained charge while unplugged: staff
    assert sum(g["target"] < 0 for g in unplugged) > len(unplugged) / 2  # most unplugged gaps just drain
