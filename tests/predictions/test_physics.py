"""The pattern cascade's physics: charging taper, idle drain, trips, mixtures and uncertainty."""

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from core.physics import Rates, State, Trip, charge_level, idle_level, parked, walk

T = datetime(2025, 11, 3, 8, 0, tzinfo=UTC)
RATES = Rates(
    idle_drain=0.2, idle_std=0.1, charge=20.0, charge_std=4.0, drive=10.0, drive_std=3.0, plug_probability=0.0
)


def test_charging_is_linear_below_80_and_tapers_towards_full():
    assert charge_level(40.0, 20.0, 1.0) == pytest.approx(60.0)
    assert charge_level(70.0, 20.0, 0.5) == pytest.approx(80.0)
    above = charge_level(80.0, 20.0, 1.0)
    assert 90.0 < above < 100.0  # slower than linear above 80 %
    assert charge_level(20.0, 20.0, 50.0) == pytest.approx(100.0, abs=1e-6)


def test_idle_drain_never_goes_below_empty():
    assert idle_level(10.0, 0.5, 4.0) == pytest.approx(8.0)
    assert idle_level(1.0, 0.5, 10.0) == 0.0


def test_a_gap_that_may_be_charging_is_a_weighted_mixture_with_more_spread():
    rates = RATES
    idle, idle_var = parked(50.0, 0.0, 2.0, 0.0, rates)
    charged, charged_var = parked(50.0, 0.0, 2.0, 1.0, rates)
    mixed, mixed_var = parked(50.0, 0.0, 2.0, 0.25, rates)

    assert mixed == pytest.approx(0.75 * idle + 0.25 * charged)
    assert mixed_var > max(idle_var, charged_var)


def test_a_car_with_a_charge_limit_charges_up_to_it_and_a_car_above_it_keeps_its_level():
    limited = dataclasses.replace(RATES, ceiling=80.0)

    assert parked(40.0, 0.0, 10.0, 1.0, limited)[0] == pytest.approx(80.0)
    assert parked(40.0, 0.0, 10.0, 1.0, RATES)[0] > 99.0  # no limit shown: towards full
    assert parked(85.0, 0.0, 10.0, 1.0, limited)[0] == pytest.approx(85.0)
    assert parked(40.0, 0.0, 1.0, 1.0, limited)[0] == pytest.approx(60.0)  # below it, the rate as before


def test_a_long_charge_shrinks_the_uncertainty_it_started_with():
    _, var_after = parked(50.0, 100.0, 12.0, 1.0, RATES)
    assert var_after < 100.0


def test_walk_predicts_each_target_through_the_trips_before_it():
    trips = [
        Trip("A", T + timedelta(hours=1), T + timedelta(hours=3), drive=10.0, drive_std=3.0, plug_probability=0.0),
        Trip("B", T + timedelta(hours=5), T + timedelta(hours=6), drive=10.0, drive_std=3.0, plug_probability=0.0),
    ]
    targets = [("A", trips[0].start), ("B", trips[1].start), ("C", T + timedelta(hours=8))]

    a, b, c = walk(State(level=80.0, at=T, charging=False), trips, targets, RATES)

    assert a.level == pytest.approx(80.0 - 0.2)  # one hour parked
    assert b.level == pytest.approx(80.0 - 0.2 - 20.0 - 0.4)  # two hours driven, two parked
    assert c.level == pytest.approx(b.level - 10.0 - 0.4)
    assert (a.trips_before, b.trips_before, c.trips_before) == (0, 1, 2)
    assert a.std < b.std < c.std
    assert [s["type"] for s in a.steps] == ["idle"]
    assert [s["type"] for s in b.steps] == ["booking", "idle"]  # since A's start
    path = a.steps + b.steps + c.steps
    assert [s["type"] for s in path] == ["idle", "booking", "idle", "booking", "idle"]
    assert path[-1]["battery_after"] == pytest.approx(c.level, abs=0.01)


def test_a_car_out_on_a_trip_now_is_driven_until_the_trip_ends():
    trip = Trip("NOW", T - timedelta(hours=1), T + timedelta(hours=1), drive=10.0, drive_std=0.0, plug_probability=0.0)

    [checkpoint] = walk(State(level=60.0, at=T, charging=False), [trip], [("X", T + timedelta(hours=1))], RATES)

    assert checkpoint.level == pytest.approx(50.0)


def test_a_renter_who_plugs_in_leaves_the_next_renter_a_fuller_car():
    def after(plug: float) -> float:
        trip = Trip("A", T, T + timedelta(hours=1), drive=10.0, drive_std=0.0, plug_probability=plug)
        [cp] = walk(State(level=60.0, at=T), [trip], [("B", T + timedelta(hours=4))], RATES)
        return cp.level

    assert after(1.0) > after(0.5) > after(0.0)


def test_intervals_stay_inside_0_and_100():
    [cp] = walk(State(level=99.0, at=T, variance=400.0), [], [("X", T + timedelta(hours=1))], RATES)
    assert 0.0 <= cp.lower <= cp.level <= cp.upper <= 100.0
