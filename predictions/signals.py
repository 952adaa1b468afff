"""Predictions' signals (defined here, so that predictions imports none of the layers above).

Receivers are thin: each calls one service, and nothing reads what they return.
"""

from django.dispatch import Signal

# Predictions were stored (`predictions.services._store`), inside the storing transaction, with the vehicle
# locked. kwargs: vehicle, predictions (the stored rows), bookings (booking id -> Booking, for the rows that
# have one), trigger (the event type, `predict`, `retrain`...), event (the InboundEvent, or None), present (the
# moment the predictions' lead times and readiness were judged from: the fleet's clock or the walk's start).
# Callbacks owes Laravel a `booking.readiness_changed` for every booking whose at-risk state changed.
predictions_stored = Signal()
