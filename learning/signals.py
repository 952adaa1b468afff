"""Signals learning listens to from the layers above it (defined here, so learning imports none of them).

Receivers are thin: each calls one learning service (`learning/receivers.py`).
"""

from django.dispatch import Signal

# A booking's predictions were scored with its pick-up level (`predictions.services.predictions_score`).
# kwargs: booking, reading, error (the current prediction's actual minus predicted; None when it had none).
# Learning learns the car's pattern from the parked gap that ended at pick-up, with the seed's error correction.
pickup_scored = Signal()

# A new champion model was promoted (`learning.training.model_promote`). kwargs: version.
# Predictions forgets the `model` candidate's shadow scores, which were its predecessor's.
model_promoted = Signal()
