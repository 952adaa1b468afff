"""Learning's signals (defined here, so that learning imports none of the layers above).

`pickup_scored` is sent from above and learning listens (`learning/receivers.py`); `champion_promoted` is sent by
learning and the layers above listen. Receivers are thin: each calls one service, and nothing reads what they
return.
"""

from django.dispatch import Signal

# A booking's predictions were scored with its pick-up level (`predictions.services.predictions_score`).
# kwargs: booking, reading, error (the current prediction's actual minus predicted; None when it had none).
# Learning learns the car's pattern from the parked gap that ended at pick-up, with the seed's error correction.
pickup_scored = Signal()

# A new champion model was promoted: sent by `learning.training.model_promote` inside the promoting
# transaction. kwargs: version (the new champion's). Predictions forgets the `model` candidate's shadow scores,
# which were its predecessor's; callbacks queues, after the commit, the re-pricing of every scheduled booking.
champion_promoted = Signal()
