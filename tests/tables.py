"""Row counts of every table an event can write, to show that a refused request changed nothing."""

from bookings.models import BatteryReading, Booking, InboundEvent
from learning.models import BookingOutcome, UserPattern, VehiclePattern
from predictions.models import Prediction
from predictions.outbox_models import CallbackOutbox


def table_counts() -> dict:
    return {
        model.__name__: model.objects.count()
        for model in (
            Booking,
            BatteryReading,
            InboundEvent,
            Prediction,
            BookingOutcome,
            VehiclePattern,
            UserPattern,
            CallbackOutbox,
        )
    }
