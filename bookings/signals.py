"""Signals the booking services send inside the event's transaction (receivers live in other apps).

Receivers are thin: each calls one service. They run while the vehicle row is locked.
"""

from django.dispatch import Signal

# A booking's battery level at pick-up became known for the first time (from booking-started, or
# from booking-ended when the start was never reported). kwargs: booking, reading.
# The learning receiver returns a `StartLearning` (prediction error, patterns updated).
start_level_observed = Signal()

# A booking was completed with its full outcome. kwargs: booking, distance_km.
booking_completed = Signal()

# The car's schedule or state changed: its later bookings must be re-predicted.
# kwargs: vehicle, pivot (re-predict bookings starting at or after it; None means all), event.
# The cascade receiver returns the predictions it issued; the event response is built from them.
schedule_changed = Signal()
