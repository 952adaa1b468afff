"""The reads written as SQL built once (common/rows.py) return what the ORM's querysets they replace return."""

from datetime import UTC, datetime, timedelta, timezone

import pytest
from django.forms.models import model_to_dict

from bookings.models import BatteryReading, Booking, BookingStatus
from bookings.selectors import booking_by_external_id, bookings_open_before
from predictions.selectors import reading_latest
from tests.factories import BatteryReadingFactory, BookingFactory, VehicleFactory

pytestmark = pytest.mark.django_db

T = datetime(2025, 11, 3, 8, tzinfo=UTC)
PLUS_TWO = timezone(timedelta(hours=2))  # the same instants, written in another offset


def rows(instances) -> list[dict]:
    return [model_to_dict(i) | {"id": i.pk, "created": getattr(i, "created_at", None)} for i in instances]


@pytest.fixture
def car():
    car, other = VehicleFactory(external_id="78"), VehicleFactory(external_id="79")
    for k, status in enumerate([*BookingStatus.values, BookingStatus.SCHEDULED, BookingStatus.ACTIVE]):
        BookingFactory(external_id=f"B{k}", vehicle=car, status=status, scheduled_start=T + timedelta(hours=k))
    BookingFactory(external_id="TIE", vehicle=car, scheduled_start=T + timedelta(hours=2))  # a tie on the start
    BookingFactory(external_id="OTHER", vehicle=other, scheduled_start=T)
    for k, level in enumerate([80.0, 70.0, 60.0]):
        BatteryReadingFactory(vehicle=car, level=level, recorded_at=T + timedelta(hours=k // 2))  # two at T
    BatteryReadingFactory(vehicle=other, level=10.0, recorded_at=T + timedelta(hours=5))
    return car


@pytest.mark.parametrize("external_id", ["B0", "TIE", "OTHER", "nope"])
def test_a_booking_by_its_id(car, external_id):
    found = booking_by_external_id(external_id)
    expected = Booking.objects.filter(external_id=external_id).first()

    assert rows([found] if found else []) == rows([expected] if expected else [])


@pytest.mark.parametrize("hours", [0, 2, 2.5, 9])
@pytest.mark.parametrize("exclude", ["", "B1", "TIE"])
def test_the_cars_open_bookings_before_a_moment_in_any_offset(car, hours, exclude):
    before = (T + timedelta(hours=hours)).astimezone(PLUS_TWO)
    expected = (
        Booking.objects.filter(
            vehicle=car, status__in=[BookingStatus.SCHEDULED, BookingStatus.ACTIVE], scheduled_start__lt=before
        )
        .exclude(external_id=exclude)
        .order_by("scheduled_start", "id")
    )

    found = bookings_open_before(vehicle=car, before=before, exclude=exclude)

    assert rows(found) == rows(expected)
    assert all(b.scheduled_start.tzinfo is not None for b in found)


@pytest.mark.parametrize("hours", [None, -1, 0, 0.5, 1, 3])
def test_the_cars_latest_reading_at_or_before_a_moment_in_any_offset(car, hours):
    at = None if hours is None else (T + timedelta(hours=hours)).astimezone(PLUS_TWO)
    readings = BatteryReading.objects.filter(vehicle=car)
    expected = (readings if at is None else readings.filter(recorded_at__lte=at)).order_by("-recorded_at", "-id")

    found = reading_latest(vehicle=car, at_or_before=at)

    assert rows([found] if found else []) == rows(expected[:1])
