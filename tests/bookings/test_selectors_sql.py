"""The reads written as SQL built once (common/rows.py) return what the ORM's querysets they replace return."""

from datetime import UTC, datetime, timedelta, timezone

import pytest
from django.forms.models import model_to_dict

from bookings.models import BatteryReading, Booking, BookingStatus
from bookings.selectors import (
    booking_by_external_id,
    bookings_by_external_ids,
    bookings_open,
    bookings_open_before,
    bookings_scheduled_before,
)
from predictions.models import Prediction
from predictions.selectors import predictions_issued_by, reading_latest
from tests.factories import (
    BatteryReadingFactory,
    BookingFactory,
    InboundEventFactory,
    PredictionFactory,
    VehicleFactory,
)

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


def test_the_cars_open_bookings_are_what_an_events_cascade_walked(car):
    expected = Booking.objects.filter(vehicle=car, status__in=[BookingStatus.SCHEDULED, BookingStatus.ACTIVE])

    assert rows(bookings_open(vehicle=car)) == rows(expected.order_by("scheduled_start", "id"))
    assert [b.external_id for b in bookings_open(vehicle=car)][:2] == ["B0", "B1"]


@pytest.mark.parametrize("ids", [[], ["B0"], ["B2", "TIE", "OTHER", "nope", "B2"]])
def test_bookings_by_their_ids(car, ids):
    expected = {b.external_id: b for b in Booking.objects.filter(external_id__in=ids)}

    found = bookings_by_external_ids(ids)

    assert sorted(found) == sorted(expected)
    assert rows(found[k] for k in sorted(found)) == rows(expected[k] for k in sorted(expected))


@pytest.mark.parametrize("hours", [0, 2, 2.5, 9])
def test_the_cars_scheduled_bookings_due_before_a_moment_in_any_offset(car, hours):
    before = (T + timedelta(hours=hours)).astimezone(PLUS_TWO)
    expected = Booking.objects.filter(vehicle=car, status=BookingStatus.SCHEDULED, scheduled_start__lt=before)

    found = bookings_scheduled_before(vehicle=car, before=before)

    assert sorted(found) == sorted(expected.values_list("external_id", flat=True))


def test_the_predictions_an_event_issued_in_their_order(car):
    event, other = InboundEventFactory(vehicle=car), InboundEventFactory(vehicle=car)
    bookings = list(Booking.objects.filter(vehicle=car).order_by("-scheduled_start"))
    for k, booking in enumerate(bookings):
        PredictionFactory(booking=booking, trigger_event=event if k % 3 else other, is_current=False)
    expected = Prediction.objects.filter(trigger_event=event).order_by("id")

    found = predictions_issued_by(event=event)

    assert len(found) >= 2
    assert rows(found) == rows(expected)
