"""Signals about what Laravel told us: triggers that the layers above connect their receivers to.

The event workflow (`events/services.py`) sends the first three inside the event's transaction,
while the car's row is locked; `bookings_mark_no_show` sends the last. Each receiver calls one
service, and nobody reads what a receiver returns: the event's response is read from what the
services stored (`events/responses.py`).
"""

from django.dispatch import Signal

# A booking's battery level at pick-up became known for the first time (from booking-started, or
# from booking-ended when the start was never reported). kwargs: booking, reading.
# Predictions scores the booking's predictions, then learning learns from the parked gap.
start_level_observed = Signal()

# A booking was completed with its full outcome. kwargs: booking, battery_at_start.
# Learning records the outcome (which teaches the car's and the renter's patterns).
booking_completed = Signal()

# The car's schedule or state changed: its later bookings must be re-predicted.
# kwargs: vehicle, pivot (re-predict bookings starting at or after it; None means all), event.
# Predictions runs the cascade and stores the predictions tagged with the event.
schedule_changed = Signal()

# Scheduled bookings were marked no-shows. kwargs: booking_ids. Predictions cancels their pending predictions.
bookings_marked_no_show = Signal()
