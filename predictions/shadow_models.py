"""Shadow scores: how far off each candidate predictor has been, per kind of prediction, on this fleet.

Rows are written by `predictions.shadow` only (created on first use, moved by atomic updates when a booking
is picked up and its predictions are scored); every prediction write reads them all in one cached query.
"""

from django.db import models


class PredictorScore(models.Model):
    """One candidate's exponentially weighted mean absolute error on one kind of prediction.

    `kind` is `<lead time>|<own|cascade>|<charging|parked|unknown>` (see `predictions.shadow.shadow_kind`);
    `candidate` is `model`, `pattern` or `persistence`. Each scored booking adds its error with weight 1
    after the older weight decays by `predictions.shadow.DECAY`, so the score follows the fleet as it changes.
    """

    kind = models.CharField(max_length=48)
    candidate = models.CharField(max_length=16)
    weight = models.FloatField(default=0.0, help_text="decayed number of scored bookings")
    sum_abs_error = models.FloatField(default=0.0, help_text="decayed sum of absolute errors, in points")
    bookings = models.PositiveIntegerField(default=0, help_text="scored bookings, undecayed")
    updated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["kind", "candidate"]
        constraints = [models.UniqueConstraint(fields=["kind", "candidate"], name="one_score_per_kind_candidate")]

    def __str__(self) -> str:
        return f"{self.candidate} on {self.kind}"

    @property
    def mae(self) -> float | None:
        return self.sum_abs_error / self.weight if self.weight > 0 else None
