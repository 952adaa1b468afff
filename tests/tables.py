"""Row counts of every table an event can write, to show that a refused request changed nothing."""

from bookings.models import BatteryReading, Booking, InboundEvent
from callbacks.models import CallbackOutbox
from learning.models import BookingOutcome, UserPattern, VehiclePattern
from predictions.models import Prediction


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
