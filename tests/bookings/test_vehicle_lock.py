"""The car's lock as a /predict takes it: the row locked, the pattern read with it, the revision moved on unless the
question is historical (which changes nothing about the car)."""

import threading

import pytest
from django.db import connection, transaction
from django.forms.models import model_to_dict
from django.test.utils import CaptureQueriesContext

from bookings.models import Vehicle
from bookings.services import vehicle_lock
from learning.models import VehiclePattern
from learning.selectors import vehicle_pattern_for
from tests.factories import VehicleFactory, VehiclePatternFactory

pytestmark = pytest.mark.django_db


def test_the_lock_with_the_pattern_moves_the_revision_and_caches_the_pattern_as_stored():
    stored = VehiclePatternFactory(
        vehicle=VehicleFactory(external_id="78"), avg_charging_rate_per_hour=21.5, charge_observations=7
    )
    revision = Vehicle.objects.get(external_id="78").revision

    with transaction.atomic():
        car = vehicle_lock(external_id="78", with_pattern=True)
        with CaptureQueriesContext(connection) as read:
            pattern = vehicle_pattern_for(car)

    assert read.captured_queries == []  # read with the car
    assert car.revision == revision + 1 == Vehicle.objects.get(external_id="78").revision
    assert model_to_dict(pattern) == model_to_dict(VehiclePattern.objects.get(pk=stored.pk))
    assert pattern.updated_at == stored.updated_at and pattern.vehicle is car


def test_the_lock_with_the_pattern_of_a_car_that_has_none_or_is_new():
    VehicleFactory(external_id="78")
    with transaction.atomic():
        known = vehicle_lock(external_id="78", with_pattern=True)
        new = vehicle_lock(external_id="79", with_pattern=True)
        with CaptureQueriesContext(connection) as read:
            patterns = vehicle_pattern_for(known), vehicle_pattern_for(new)

    assert patterns == (None, None) and read.captured_queries == []
    assert Vehicle.objects.filter(external_id="79").exists()


def test_the_historical_lock_with_the_pattern_keeps_the_revision():
    stored = VehiclePatternFactory(vehicle=VehicleFactory(external_id="78"), charge_observations=3)
    revision = Vehicle.objects.get(external_id="78").revision

    with transaction.atomic():
        car = vehicle_lock(external_id="78", with_pattern=True, changes=False)
        with CaptureQueriesContext(connection) as read:
            pattern = vehicle_pattern_for(car)

    assert read.captured_queries == []
    assert car.revision == revision == Vehicle.objects.get(external_id="78").revision
    assert model_to_dict(pattern) == model_to_dict(VehiclePattern.objects.get(pk=stored.pk))


@pytest.mark.postgres
@pytest.mark.parametrize("changes", [True, False])
def test_on_postgres_the_lock_with_the_pattern_is_one_statement(changes):
    VehiclePatternFactory(vehicle=VehicleFactory(external_id="78"))
    with transaction.atomic(), CaptureQueriesContext(connection) as taken:
        vehicle_lock(external_id="78", with_pattern=True, changes=changes)
    assert len([q for q in taken.captured_queries if "SAVEPOINT" not in q["sql"]]) == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("changes", [True, False])
def test_the_lock_with_the_pattern_holds_the_cars_row_until_the_transaction_ends(changes):
    VehiclePatternFactory(vehicle=VehicleFactory(external_id="78"))
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        try:
            with transaction.atomic():
                vehicle_lock(external_id="78", with_pattern=True, changes=changes)
                held.set()
                release.wait(10)
        finally:
            connection.close()

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert held.wait(10)
        with (
            pytest.raises(Exception, match="could not obtain lock"),
            transaction.atomic(),
            connection.cursor() as cursor,
        ):
            cursor.execute("SELECT 1 FROM bookings_vehicle WHERE external_id = '78' FOR UPDATE NOWAIT")
        with connection.cursor() as cursor:  # the pattern's row is read, not locked
            cursor.execute(
                "SELECT 1 FROM learning_vehiclepattern p JOIN bookings_vehicle v ON v.id = p.vehicle_id "
                "WHERE v.external_id = '78' FOR UPDATE OF p NOWAIT"
            )
            assert cursor.fetchone() == (1,)
    finally:
        release.set()
        holder.join(10)
