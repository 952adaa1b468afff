"""Online interval calibration: two margins per kind of prediction, learned from scored outcomes.

Rows are written by `predictions.calibration` only (created on first use, moved by atomic updates
when a booking's predictions are scored); prediction writes read them all in one query.
"""

from django.db import models


class IntervalCalibration(models.Model):
    """How far to move out the lower and the upper side of one kind of prediction's 95 % interval.

    `key` is `<model|pattern>|<trigger>[ (cascade)]|<lead time: hours from the present to the
    pick-up>`; see `predictions.calibration`. Margins are in points (0: as the predictor gave it).
    """

    key = models.CharField(max_length=64, unique=True)
    margin_lower = models.FloatField(default=0.0, help_text="points added below the predictor's interval")
    margin_upper = models.FloatField(default=0.0, help_text="points added above the predictor's interval")
    bookings = models.PositiveIntegerField(default=0, help_text="scored bookings that moved the margins")
    predictions = models.PositiveIntegerField(default=0, help_text="scored predictions among them")
    below = models.PositiveIntegerField(default=0, help_text="predictions whose actual fell below their interval")
    above = models.PositiveIntegerField(default=0, help_text="predictions whose actual fell above their interval")
    updated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["key"]

    def __str__(self) -> str:
        return self.key
