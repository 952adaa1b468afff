"""The pick-up's and the fleet prior's reads written as SQL built once return what the ORM's querysets they replace
return (docs/performance.md, issue 15's fifth round)."""

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from django.db import connection
from django.db.models import Avg, Count, Q, Sum
from django.forms.models import model_to_dict

from bookings.models import BatteryReading, Booking, ReadingSource, Vehicle
from learning import selectors
from learning.models import VehiclePattern
from learning.services import _return_before, _trip_between, pattern_learn_from_start, vehicle_pattern_for_update
from predictions.selectors import prediction_current_error
from tests.factories import (
    BatteryReadingFactory,
    BookingFactory,
    BookingOutcomeFactory,
    PredictionFactory,
    VehicleFactory,
    VehiclePatternFactory,
)

pytestmark = pytest.mark.django_db

T = datetime(2025, 11, 3, 8, tzinfo=UTC)


@pytest.fixture
def fleet():
    """Patterns with every mix of observed and unobserved rates, charges and none."""
    for k in range(6):
        VehiclePatternFactory(
            avg_idle_drain_per_hour=0.1 * (k + 1) if k % 3 else None,
            var_idle_drain_per_hour=0.01 * k,
            idle_observations=k % 3,
            avg_charging_rate_per_hour=4.0 + 3 * k if k % 2 else None,
            var_charging_rate_per_hour=0.5 * k,
            charge_observations=k % 2 + (k > 3),
            avg_drain_rate_per_hour=6.0 + k,
            drive_observations=k,
            avg_drain_rate_per_km=0.15 + 0.01 * k,
            km_observations=k // 2,
            total_charges=k % 2 * k,
            total_bookings=3 * k,
        )


def test_the_fleets_figures_are_the_orms_aggregates(fleet):
    orm = VehiclePattern.objects.aggregate(
        cars=Count("id"),
        idle=Avg("avg_idle_drain_per_hour", filter=Q(idle_observations__gt=0)),
        idle_var=Avg("var_idle_drain_per_hour", filter=Q(idle_observations__gt=1)),
        charge=Avg("avg_charging_rate_per_hour", filter=Q(charge_observations__gt=0)),
        charge_var=Avg("var_charging_rate_per_hour", filter=Q(charge_observations__gt=1)),
        drive=Avg("avg_drain_rate_per_hour", filter=Q(drive_observations__gt=0)),
        drive_var=Avg("var_drain_rate_per_hour", filter=Q(drive_observations__gt=1)),
        per_km=Avg("avg_drain_rate_per_km", filter=Q(km_observations__gt=0)),
        per_km_var=Avg("var_drain_rate_per_km", filter=Q(km_observations__gt=1)),
        charges=Sum("total_charges"),
        bookings=Sum("total_bookings"),
        chargeable_bookings=Sum("total_bookings", filter=Q(total_charges__gt=0)),
    )
    with connection.cursor() as cursor:
        cursor.execute(selectors._fleet_figures_sql())
        by_hand = dict(zip([name for name, *_ in selectors._FLEET_FIGURES], cursor.fetchone(), strict=True))

    assert by_hand.keys() == orm.keys()
    for name, value in orm.items():
        assert by_hand[name] == pytest.approx(value), name
    assert orm["idle"] is not None and orm["idle_var"] is not None  # the fixture exercises the filters


def test_the_fleet_prior_of_no_car_is_the_default():
    assert selectors.fleet_prior() == selectors.FleetPrior()


def test_the_slow_end_of_the_charging_rates_is_over_the_cars_seen_charging(fleet, settings):
    settings.READINESS_RISK_THRESHOLD = 0.75
    rates = VehiclePattern.objects.filter(charge_observations__gt=0, avg_charging_rate_per_hour__isnull=False)
    values = list(rates.values_list("avg_charging_rate_per_hour", flat=True))

    assert len(values) == 3
    assert selectors.fleet_prior().charge_low == pytest.approx(
        max(np.quantile(values, 0.25), selectors.MIN_CHARGE_RATE)
    )


@pytest.fixture
def car_history():
    car, other = VehicleFactory(), VehicleFactory()
    for k, source in enumerate(
        [ReadingSource.BOOKING_ENDED, ReadingSource.PREDICT_REQUEST, ReadingSource.BOOKING_ENDED]
    ):
        BatteryReadingFactory(vehicle=car, level=70.0 - k, recorded_at=T + timedelta(hours=k), source=source)
    BatteryReadingFactory(vehicle=car, level=50.0, recorded_at=T + timedelta(hours=2))  # a tie at T + 2 h
    BatteryReadingFactory(vehicle=other, level=10.0, recorded_at=T + timedelta(hours=3))
    for k in range(3):
        BookingFactory(vehicle=car, scheduled_start=T, actual_start=T + timedelta(hours=2 * k))
    BookingFactory(vehicle=other, scheduled_start=T, actual_start=T + timedelta(hours=1))
    return car


@pytest.mark.parametrize("hours", [0, 1, 2, 3, 5])
def test_the_return_before_a_reading_is_the_orms(car_history, hours):
    reading = BatteryReading(vehicle=car_history, level=40.0, recorded_at=T + timedelta(hours=hours))
    orm = (
        BatteryReading.objects.filter(
            vehicle_id=car_history.pk, recorded_at__lt=reading.recorded_at, source=ReadingSource.BOOKING_ENDED
        )
        .order_by("-recorded_at", "-id")
        .first()
    )

    found = _return_before(reading)

    assert (found and model_to_dict(found)) == (orm and model_to_dict(orm))


@pytest.mark.parametrize(("after", "before"), [(0, 1), (0, 3), (1, 2), (-1, 0), (1, 5)])
def test_a_trip_between_two_moments_is_the_orms(car_history, after, before):
    first = Booking.objects.filter(vehicle=car_history).order_by("actual_start").first()
    span = {"after": T + timedelta(hours=after), "before": T + timedelta(hours=before)}
    orm = (
        Booking.objects.filter(vehicle=car_history, actual_start__gt=span["after"], actual_start__lt=span["before"])
        .exclude(pk=first.pk)
        .exists()
    )

    assert _trip_between(vehicle=car_history, exclude=first, **span) is orm


def test_a_cars_pattern_for_update_is_the_stored_one_or_a_new_one():
    car, known = VehicleFactory(), VehiclePatternFactory(avg_idle_drain_per_hour=0.3, idle_observations=2)

    fresh = vehicle_pattern_for_update(vehicle=car)
    stored = vehicle_pattern_for_update(vehicle=known.vehicle)

    assert fresh.pk is not None and VehiclePattern.objects.get(vehicle=car).pk == fresh.pk
    assert model_to_dict(stored) == model_to_dict(known)
    assert not stored._state.adding
    stored.idle_observations += 1
    stored.save()  # an update of the stored row, not a second row
    assert VehiclePattern.objects.filter(vehicle=known.vehicle).get().idle_observations == 3


def test_the_pick_up_counts_and_the_outcome_are_the_stored_ones():
    pattern = VehiclePatternFactory(idle_observations=2, charge_observations=3, error_corrections=4)
    outcome = BookingOutcomeFactory()

    assert selectors.pattern_pickup_lessons(vehicle=pattern.vehicle) == 9
    assert selectors.pattern_pickup_lessons(vehicle=VehicleFactory()) == 0
    assert selectors.outcome_of(booking_id=outcome.booking_id).pk == outcome.pk
    assert selectors.outcome_of(booking_id=BookingFactory().pk) is None
    assert selectors.vehicle_pattern_stored(vehicle_id=pattern.vehicle_id).pk == pattern.pk


def test_the_current_predictions_error_is_the_stored_one():
    booking = BookingFactory()
    PredictionFactory(booking=booking, booking_external_id=booking.external_id, is_current=False, actual_battery=50.0)
    PredictionFactory(booking=booking, booking_external_id=booking.external_id, actual_battery=62.5)

    current = booking.predictions.get(is_current=True)
    assert prediction_current_error(booking_id=booking.external_id) == pytest.approx(current.prediction_error)
    assert prediction_current_error(booking_id="none") is None


def test_what_a_pick_up_changes_in_the_pattern_and_does_not_save_stays_out_of_the_cascades_copy():
    """A charging gap that ends full forgets the car's learned limit and learns no rate; the event's cascade, which
    reads the car's pattern from the same car object, must price with the row as stored."""
    car = VehicleFactory()
    stored = VehiclePatternFactory(vehicle=car, charge_ceiling=80.0, ceiling_candidate=80.0)
    BatteryReadingFactory(vehicle=car, level=40.0, recorded_at=T, source=ReadingSource.BOOKING_ENDED, charging=True)
    fresh = Vehicle.objects.get(pk=car.pk)  # the factory's car holds the factory's pattern object
    booking = BookingFactory(vehicle=fresh, scheduled_start=T + timedelta(hours=10))
    reading = BatteryReadingFactory(
        vehicle=car, level=100.0, recorded_at=T + timedelta(hours=10), source=ReadingSource.BOOKING_STARTED
    )

    pattern_learn_from_start(booking=booking, reading=reading, error=None)

    assert model_to_dict(selectors.vehicle_pattern_for(booking.vehicle)) == model_to_dict(
        VehiclePattern.objects.get(pk=stored.pk)
    )


@pytest.mark.parametrize("error", [None, 2.0])
def test_a_second_stop_at_the_cars_limit_is_kept_when_the_pick_up_was_predicted_well(error):
    """A second charging gap that flattened where the first did makes the candidate the car's limit and teaches no
    rate; no correction follows a pick-up predicted within 5 points, and the limit is saved all the same (before,
    only a learned rate or a correction saved the row, so a well-predicted car never kept its limit)."""
    car = VehicleFactory()
    VehiclePatternFactory(vehicle=car, ceiling_candidate=80.0)
    BatteryReadingFactory(vehicle=car, level=30.0, recorded_at=T, source=ReadingSource.BOOKING_ENDED, charging=True)
    booking = BookingFactory(vehicle=car, scheduled_start=T + timedelta(hours=14))
    reading = BatteryReadingFactory(
        vehicle=car, level=80.0, recorded_at=T + timedelta(hours=14), source=ReadingSource.BOOKING_STARTED
    )

    pattern_learn_from_start(booking=booking, reading=reading, error=error)

    stored = VehiclePattern.objects.get(vehicle=car)
    assert (stored.charge_ceiling, stored.ceiling_candidate) == (pytest.approx(80.0), 80.0)
    assert stored.charge_observations == 0 and stored.error_corrections == 0
