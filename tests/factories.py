"""factory-boy factories for the models tests build directly (most tests go through the API)."""

from datetime import UTC, datetime, timedelta

import factory
from django.utils import timezone

from bookings.models import BatteryReading, Booking, BookingStatus, InboundEvent, ReadingSource, Vehicle
from learning.models import BookingOutcome, UserPattern, VehiclePattern

T0 = datetime(2025, 11, 3, 8, 0, tzinfo=UTC)


class VehicleFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Vehicle
        django_get_or_create = ("external_id",)

    external_id = factory.Sequence(lambda n: str(100 + n))


class BookingFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Booking

    external_id = factory.Sequence(lambda n: f"BKF{n}")
    vehicle = factory.SubFactory(VehicleFactory)
    user_id = factory.Sequence(lambda n: str(500 + n))
    status = BookingStatus.SCHEDULED
    scheduled_start = factory.Sequence(lambda n: T0 + timedelta(hours=6 * n))
    scheduled_end = factory.LazyAttribute(lambda b: b.scheduled_start + timedelta(hours=2))


class BatteryReadingFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = BatteryReading

    vehicle = factory.SubFactory(VehicleFactory)
    level = 80.0
    recorded_at = T0
    source = ReadingSource.BOOKING_ENDED
    charging = False


class VehiclePatternFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = VehiclePattern

    vehicle = factory.SubFactory(VehicleFactory)


class UserPatternFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = UserPattern

    user_id = factory.Sequence(lambda n: str(900 + n))


class PredictionFactory(factory.django.DjangoModelFactory):
    """A booking's current prediction; pass `actual_battery` to make it a scored one (as at pick-up)."""

    class Meta:
        model = "predictions.Prediction"

    booking = factory.SubFactory(BookingFactory)
    vehicle = factory.LazyAttribute(lambda p: p.booking.vehicle)
    booking_external_id = factory.LazyAttribute(lambda p: p.booking.external_id)
    user_id = factory.LazyAttribute(lambda p: p.booking.user_id)
    prediction_id = factory.Sequence(lambda n: f"pred_f{n}")
    booking_start_time = factory.LazyAttribute(lambda p: p.booking.scheduled_start)
    predicted_at = factory.LazyAttribute(lambda p: p.booking_start_time - timedelta(hours=2))
    predicted_battery = 60.0
    confidence_lower = factory.LazyAttribute(lambda p: max(p.predicted_battery - 10, 0))
    confidence_upper = factory.LazyAttribute(lambda p: min(p.predicted_battery + 10, 100))
    prediction_method = "real_time_cascade"
    model_version = "m-test"
    trigger = "booking.created"
    is_current = True
    actual_battery = None
    prediction_error = factory.LazyAttribute(
        lambda p: None if p.actual_battery is None else p.actual_battery - p.predicted_battery
    )
    status = factory.LazyAttribute(lambda p: "pending" if p.actual_battery is None else "completed")


class CallbackOutboxFactory(factory.django.DjangoModelFactory):
    """An outbox row `age` old; a pending one is due since its creation (as the outbox writes them)."""

    class Meta:
        model = "callbacks.CallbackOutbox"

    class Params:
        age = timedelta(0)

    endpoint = "http://laravel.internal/api/ml/predictions-updated"
    body = "{}"
    triggered_by = "booking.ended"
    status = "pending"
    created_at = factory.LazyAttribute(lambda o: timezone.now() - o.age)
    next_attempt_at = factory.LazyAttribute(lambda o: o.created_at if o.status == "pending" else None)


class CallbackAttemptFactory(factory.django.DjangoModelFactory):
    """One finished attempt of a callback (200 unless told)."""

    class Meta:
        model = "callbacks.CallbackAttempt"

    outbox = factory.SubFactory(CallbackOutboxFactory)
    number = factory.Sequence(lambda n: n + 1)
    started_at = factory.LazyAttribute(lambda a: a.outbox.created_at)
    webhook_timestamp = factory.LazyAttribute(lambda a: int(a.started_at.timestamp()))
    duration_ms = 12
    status_code = 200


class InboundEventFactory(factory.django.DjangoModelFactory):
    """A stored webhook received `age` ago (its `received_at` is set after the insert: the field is auto_now_add)."""

    class Meta:
        model = InboundEvent

    class Params:
        age = timedelta(0)

    event_type = "booking.created"
    booking_external_id = factory.Sequence(lambda n: f"BKE{n}")
    vehicle = factory.SubFactory(VehicleFactory)
    idempotency_key = factory.Sequence(lambda n: f"evt-f{n}")
    body = factory.LazyAttribute(lambda e: {"booking_id": e.booking_external_id, "vehicle_id": e.vehicle.external_id})
    response = factory.LazyAttribute(lambda e: {"status": "success", "booking_id": e.booking_external_id})
    received_at = factory.LazyAttribute(lambda e: timezone.now() - e.age)

    @classmethod
    def _create(cls, model_class, *args, received_at, **kwargs):
        event = super()._create(model_class, *args, **kwargs)
        model_class.objects.filter(pk=event.pk).update(received_at=received_at)
        event.received_at = received_at
        return event


class BookingOutcomeFactory(factory.django.DjangoModelFactory):
    """The outcome of a completed booking, as `booking.ended` records it."""

    class Meta:
        model = BookingOutcome

    booking = factory.SubFactory(BookingFactory, status=BookingStatus.COMPLETED)
    vehicle = factory.LazyAttribute(lambda o: o.booking.vehicle)
    user_id = factory.LazyAttribute(lambda o: o.booking.user_id)
    starts_at = factory.LazyAttribute(lambda o: o.booking.scheduled_start)
    ends_at = factory.LazyAttribute(lambda o: o.booking.scheduled_end)
    duration_hours = 2.0
    battery_at_start = 80.0
    battery_at_end = 70.0
    battery_drain = 10.0
