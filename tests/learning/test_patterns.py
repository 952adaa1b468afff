"""Pattern learning: EMA (alpha 0.3), gaps between bookings, the error-correction rule, the fleet prior."""

from datetime import timedelta

import pytest
import time_machine
from django.forms.models import model_to_dict

from bookings.models import BookingStatus
from core.ema import ALPHA, charging_rate_from_gap, ema_update
from core.physics import charge_level
from learning.models import ConfidenceLevel, UserPattern, VehiclePattern, confidence_for
from learning.selectors import (
    SHRINK_STRENGTH,
    FleetPrior,
    fleet_prior,
    fleet_prior_cached,
    user_patterns_for,
    vehicle_rates,
)
from tests.factories import (
    T0,
    BatteryReadingFactory,
    BookingFactory,
    UserPatternFactory,
    VehicleFactory,
    VehiclePatternFactory,
)
from tests.seed_examples import URL


def iso(dt) -> str:
    return dt.isoformat().replace("+00:00", "Z")


def trip(post, *, car="7", booking, start, hours=2.0, level_start, level_end, charging=False, user="u1"):
    """Post booking-created, -started and -ended for one trip; return the started and ended responses."""
    end = start + timedelta(hours=hours)
    post(
        URL["created"],
        {"booking_id": booking, "vehicle_id": car, "user_id": user, "starts_at": iso(start), "ends_at": iso(end)},
    )
    started = post(
        URL["started"],
        {
            "booking_id": booking,
            "vehicle_id": car,
            "actual_battery_at_start": level_start,
            "actual_started_at": iso(start),
        },
    ).json()
    ended = post(
        URL["ended"],
        {
            "booking_id": booking,
            "vehicle_id": car,
            "user_id": user,
            "starts_at": iso(start),
            "ends_at": iso(end),
            "battery_at_start": level_start,
            "battery_at_end": level_end,
            "charging_at_end": int(charging),
        },
    ).json()
    return started, ended


def test_ema_gives_thirty_percent_to_the_new_observation():
    average, variance = ema_update(10.0, 0.0, 20.0)
    assert ALPHA == 0.3
    assert average == pytest.approx(0.3 * 20.0 + 0.7 * 10.0)
    assert variance == pytest.approx(0.7 * 0.3 * 100.0)
    assert ema_update(None, 0.0, 5.0) == (5.0, 0.0)


def test_the_charging_rate_is_recovered_from_a_gap_even_through_the_taper():
    for rate in (6.0, 15.0, 30.0):
        end = charge_level(40.0, rate, 2.5)
        if end < 99:
            assert charging_rate_from_gap(40.0, end, 2.5) == pytest.approx(rate, rel=1e-4)
    assert charging_rate_from_gap(40.0, 100.0, 5.0) is None  # full: only a lower bound
    assert charging_rate_from_gap(40.0, 35.0, 5.0) is None


@pytest.mark.parametrize(
    ("bookings", "level"), [(0, "low"), (4, "low"), (5, "medium"), (19, "medium"), (20, "high"), (47, "high")]
)
def test_confidence_levels_follow_the_seed(bookings, level):
    assert confidence_for(bookings) == ConfidenceLevel(level)


@pytest.mark.django_db
def test_trip_drain_is_learned_by_ema_across_bookings(post):
    trip(post, booking="A", start=T0, hours=2, level_start=80, level_end=60)  # 10 %/h
    _, ended = trip(post, booking="B", start=T0 + timedelta(days=1), hours=2, level_start=80, level_end=40)  # 20 %/h

    assert ended["new_avg_drain_rate"] == pytest.approx(0.3 * 20 + 0.7 * 10)
    assert ended["total_bookings"] == 2
    pattern = VehiclePattern.objects.get()
    assert pattern.drive_observations == 2 and pattern.std_drain_rate_per_hour > 0


@pytest.mark.django_db
def test_idle_drain_is_learned_from_the_gap_between_return_and_next_pick_up(post):
    trip(post, booking="A", start=T0, hours=2, level_start=80, level_end=60)
    started, _ = trip(post, booking="B", start=T0 + timedelta(hours=12), level_start=59, level_end=50)

    pattern = VehiclePattern.objects.get()
    assert pattern.idle_observations == 1
    assert pattern.avg_idle_drain_per_hour == pytest.approx(1.0 / 10.0)
    assert started["patterns_updated"] is True


@pytest.mark.django_db
def test_the_charging_rate_is_learned_when_the_car_was_left_plugged_in(post):
    trip(post, booking="A", start=T0, hours=2, level_start=80, level_end=30, charging=True)
    trip(post, booking="B", start=T0 + timedelta(hours=4), level_start=60, level_end=50)

    pattern = VehiclePattern.objects.get()
    assert pattern.charge_observations == 1
    assert pattern.avg_charging_rate_per_hour == pytest.approx(15.0, rel=1e-3)
    assert pattern.charging_frequency == pytest.approx(0.5)


@pytest.mark.django_db
def test_a_charge_limit_is_learned_and_the_pattern_cascade_stops_charging_there(post):
    """Two charging gaps that flattened at the same level, from other starts and lengths, show a charge limit (as
    the model's features learn it); the pattern walk then charges a car left plugged in up to it, not to full."""
    trip(post, booking="A", start=T0, hours=2, level_start=90, level_end=30, charging=True)
    trip(post, booking="B", start=T0 + timedelta(hours=14), level_start=80, level_end=40, charging=True)
    pattern = VehiclePattern.objects.get()
    assert (pattern.charge_ceiling, pattern.ceiling_candidate) == (None, 80)  # one stop could be a slow charge
    trip(post, booking="C", start=T0 + timedelta(hours=30), level_start=80, level_end=30, charging=True)

    pattern = VehiclePattern.objects.get()
    assert pattern.charge_ceiling == pytest.approx(80.0)
    assert pattern.charge_observations == 1  # the stop at the limit is not read as a rate
    assert vehicle_rates(pattern, fleet_prior()).ceiling == pytest.approx(80.0)
    created = {"booking_id": "D", "vehicle_id": "7", "user_id": "u1"}
    created |= {"starts_at": iso(T0 + timedelta(hours=62)), "ends_at": iso(T0 + timedelta(hours=64))}
    level = post(URL["created"], created).json()["predicted_battery"]
    assert 75.0 <= level <= 80.0  # 30 h on the charger, stopped at the limit


@pytest.mark.django_db
def test_a_short_charge_that_stopped_at_the_limit_raises_a_rate_learned_too_low(post):
    """A charge that reached the car's limit bounds its rate from below: when the bound is above the rate learned so
    far (the first stop at the limit, before it was known, was read as a rate), the rate moves up to it; a long one
    whose bound is lower teaches nothing."""
    trip(post, booking="A", start=T0, hours=2, level_start=90, level_end=30, charging=True)
    trip(post, booking="B", start=T0 + timedelta(hours=14), level_start=80, level_end=40, charging=True)
    trip(post, booking="C", start=T0 + timedelta(hours=30), level_start=80, level_end=40, charging=True)
    pattern = VehiclePattern.objects.get()
    assert pattern.charge_ceiling == pytest.approx(80.0)
    first = 50.0 / 12.0  # A's 12 hours to 80, read as a rate before the limit was known
    assert (pattern.avg_charging_rate_per_hour, pattern.charge_observations) == (pytest.approx(first, rel=1e-3), 1)

    # 40 to the limit in 2 hours: at least (80 - CEILING_TOLERANCE - 40) / 2 points an hour
    trip(post, booking="D", start=T0 + timedelta(hours=34), level_start=80, level_end=40, charging=True)
    pattern = VehiclePattern.objects.get()
    assert pattern.charge_observations == 2
    assert pattern.avg_charging_rate_per_hour == pytest.approx(first + ALPHA * (39.0 / 2.0 - first), rel=1e-3)

    # 40 to the limit in 20 hours says at least 2 points an hour: below what it knows, so nothing
    trip(post, booking="E", start=T0 + timedelta(hours=56), level_start=80, level_end=60)
    assert VehiclePattern.objects.get().charge_observations == 2


@pytest.mark.django_db
def test_a_level_reported_inside_the_gap_does_not_stop_it_being_learned(post):
    """The gap runs from the return to the pick-up, whatever the platform reported in between."""
    trip(post, booking="A", start=T0, hours=2, level_start=80, level_end=30, charging=True)
    post(
        URL["predict"],
        {
            "vehicle_id": "7",
            "booking_start_time": iso(T0 + timedelta(hours=4)),
            "current_battery_level": 45,
            "current_timestamp": iso(T0 + timedelta(hours=3)),
        },
    )
    trip(post, booking="B", start=T0 + timedelta(hours=4), level_start=60, level_end=50)

    pattern = VehiclePattern.objects.get()
    assert pattern.charge_observations == 1
    assert pattern.avg_charging_rate_per_hour == pytest.approx(15.0, rel=1e-3)


@pytest.mark.django_db
def test_a_charge_nobody_reported_is_counted_not_learned_as_negative_drain(post):
    trip(post, booking="A", start=T0, hours=2, level_start=80, level_end=20)
    trip(post, booking="B", start=T0 + timedelta(days=1), level_start=95, level_end=80)

    pattern = VehiclePattern.objects.get()
    assert pattern.unreported_charges == 1 and pattern.idle_observations == 0


def pick_up_missing_the_prediction_by(post, points: float) -> dict:
    """A car last heard of through a predict call (no clean gap), picked up `points` below its prediction."""
    start = T0 + timedelta(hours=10)
    post(
        URL["predict"],
        {
            "vehicle_id": "7",
            "booking_start_time": iso(start),
            "current_battery_level": 80,
            "current_timestamp": iso(T0),
        },
    )
    created = post(
        URL["created"],
        {"booking_id": "A", "vehicle_id": "7", "starts_at": iso(start), "ends_at": iso(start + timedelta(hours=2))},
    ).json()
    return post(
        URL["started"],
        {
            "booking_id": "A",
            "vehicle_id": "7",
            "actual_started_at": iso(start),
            "actual_battery_at_start": created["predicted_battery"] - points,
        },
    ).json()


@pytest.mark.django_db
def test_error_correction_moves_the_idle_rate_by_a_fifth_of_the_error_and_widens_the_spread(post):
    started = pick_up_missing_the_prediction_by(post, 8.0)

    assert started["prediction_error"] == pytest.approx(-8.0, abs=0.01)
    assert started["patterns_updated"] is True
    pattern = VehiclePattern.objects.get()
    assert pattern.error_corrections == 1
    assert pattern.avg_idle_drain_per_hour == pytest.approx(0.2 * 8.0 / 10.0, abs=1e-3)
    assert pattern.var_idle_drain_per_hour == pytest.approx(0.01 * 1.21)


@pytest.mark.django_db
def test_a_small_error_leaves_the_patterns_alone(post):
    started = pick_up_missing_the_prediction_by(post, 3.0)

    assert started["patterns_updated"] is False
    assert VehiclePattern.objects.get().error_corrections == 0


@pytest.mark.django_db
def test_a_new_car_borrows_the_fleet_average_and_moves_to_its_own_with_bookings():
    for index, rate in enumerate([8.0, 12.0]):
        VehiclePatternFactory(
            vehicle=VehicleFactory(external_id=f"F{index}"),
            avg_drain_rate_per_hour=rate,
            drive_observations=10,
            total_bookings=10,
        )
    prior = fleet_prior()
    assert prior.drive == pytest.approx(10.0)

    new = VehiclePatternFactory(avg_drain_rate_per_hour=20.0, drive_observations=1, total_bookings=1)
    seasoned = VehiclePatternFactory(avg_drain_rate_per_hour=20.0, drive_observations=30, total_bookings=30)

    assert vehicle_rates(None, prior).drive == pytest.approx(10.0)
    assert vehicle_rates(new, prior).drive == pytest.approx((20.0 + SHRINK_STRENGTH * 10.0) / (1 + SHRINK_STRENGTH))
    assert vehicle_rates(seasoned, prior).drive == pytest.approx(
        (30 * 20.0 + SHRINK_STRENGTH * 10.0) / (30 + SHRINK_STRENGTH)
    )


@pytest.mark.django_db
def test_the_fleets_plugging_habit_is_counted_on_the_cars_seen_charging():
    """A quarter of the fleet's cars have no charger: their returns, never plugged in, say nothing of the habit the
    model's Monte Carlo draws for a car that has one."""
    VehiclePatternFactory(vehicle=VehicleFactory(external_id="home"), total_bookings=30, total_charges=18)
    VehiclePatternFactory(vehicle=VehicleFactory(external_id="none"), total_bookings=10, total_charges=0)

    prior = fleet_prior()

    assert prior.plug_probability == pytest.approx((18 + 10 * 0.3) / (40 + 10))  # every return, shrunk by 10
    assert prior.plug_habit == pytest.approx((18 + 10 * 0.3) / (30 + 10))  # the returns to the car with a charger


@pytest.mark.django_db
def test_the_cached_fleet_prior_is_renewed_as_the_fleets_clock_moves_not_only_the_servers(settings):
    """A replayed month arrives in minutes: after FLEET_PRIOR_CACHE_SECONDS of the fleet's time the average is new."""
    settings.FLEET_PRIOR_CACHE_SECONDS = 60
    settings.FLEET_CLOCK_CACHE_SECONDS = 0
    car = VehicleFactory()
    BatteryReadingFactory(vehicle=car, recorded_at=T0)
    VehiclePatternFactory(avg_charging_rate_per_hour=2.0, charge_observations=5)
    assert fleet_prior_cached().charge == pytest.approx(2.0)

    VehiclePatternFactory(avg_charging_rate_per_hour=4.0, charge_observations=5)
    BatteryReadingFactory(vehicle=car, recorded_at=T0 + timedelta(seconds=50))
    assert fleet_prior_cached().charge == pytest.approx(2.0)  # 50 s of either clock: still the cached average

    BatteryReadingFactory(vehicle=car, recorded_at=T0 + timedelta(hours=2))
    assert fleet_prior_cached().charge == pytest.approx(3.0)  # two hours of the fleet's time in a moment of ours


@pytest.mark.django_db
def test_the_cached_fleet_prior_is_renewed_on_the_servers_clock_too(settings):
    """Live, the fleet's clock can stand still (no car reported): the server's TTL still renews the average."""
    settings.FLEET_PRIOR_CACHE_SECONDS = 60
    settings.FLEET_CLOCK_CACHE_SECONDS = 0
    BatteryReadingFactory(recorded_at=T0)
    VehiclePatternFactory(avg_charging_rate_per_hour=2.0, charge_observations=5)
    with time_machine.travel(T0 + timedelta(hours=1), tick=False) as clock:
        assert fleet_prior_cached().charge == pytest.approx(2.0)
        VehiclePatternFactory(avg_charging_rate_per_hour=4.0, charge_observations=5)
        clock.shift(timedelta(seconds=30))
        assert fleet_prior_cached().charge == pytest.approx(2.0)
        clock.shift(timedelta(seconds=61))
        assert fleet_prior_cached().charge == pytest.approx(3.0)


@pytest.mark.django_db
def test_with_no_patterns_the_fleet_prior_is_the_documented_default():
    assert fleet_prior() == FleetPrior()


@pytest.mark.django_db
def test_a_renter_who_plugs_in_raises_the_next_bookings_prediction(post):
    def next_prediction(user: str, car: str) -> float:
        for i in range(3):  # the renter's habit: always plugs in (or never)
            trip(
                post,
                car=f"{car}{i}",
                booking=f"{car}H{i}",
                user=user,
                start=T0 + timedelta(days=i),
                level_start=80,
                level_end=40,
                charging=user == "plugger",
            )
        start = T0 + timedelta(days=10)
        post(
            URL["created"],
            {
                "booking_id": f"{car}1",
                "vehicle_id": car,
                "user_id": user,
                "starts_at": iso(start),
                "ends_at": iso(start + timedelta(hours=2)),
                "current_battery_level": 50,
                "current_timestamp": iso(start - timedelta(hours=1)),
            },
        )
        body = post(
            URL["created"],
            {
                "booking_id": f"{car}2",
                "vehicle_id": car,
                "user_id": "other",
                "starts_at": iso(start + timedelta(hours=8)),
                "ends_at": iso(start + timedelta(hours=9)),
            },
        ).json()
        return body["predicted_battery"]

    assert next_prediction("plugger", "P") > next_prediction("never", "N") + 5


@pytest.mark.django_db
def test_an_outcome_is_learned_once_per_booking():
    from learning.services import outcome_record

    booking = BookingFactory(
        status=BookingStatus.COMPLETED,
        actual_start=T0,
        actual_end=T0 + timedelta(hours=2),
        battery_at_start=80,
        battery_at_end=60,
        charging_at_end=False,
    )
    outcome_record(booking=booking, battery_at_start=80)
    outcome_record(booking=booking, battery_at_start=80)

    assert VehiclePattern.objects.get(vehicle=booking.vehicle).total_bookings == 1


@pytest.mark.django_db
def test_the_renters_patterns_are_read_as_the_orm_reads_them_by_user_id():
    stored = [
        UserPatternFactory(user_id="860", avg_return_battery=71.5, total_bookings=4),
        UserPatternFactory(user_id="861", avg_drain_rate_per_km=0.17, km_observations=2),
        UserPatternFactory(user_id="862"),
    ]

    found = user_patterns_for(["861", "", "860", "860", "999"])

    assert sorted(found) == ["860", "861"]  # no empty id, each once, an unknown renter absent
    for pattern in stored[:2]:
        read = found[pattern.user_id]
        assert model_to_dict(read) == model_to_dict(UserPattern.objects.get(pk=pattern.pk))
        assert read.updated_at == pattern.updated_at and read.pk == pattern.pk
    assert user_patterns_for(["", "999"]) == {}
