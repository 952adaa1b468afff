"""Thin receivers: booking events and scored pick-ups hand off to the learning services (EMA updates)."""

from django.db.models.signals import post_save
from django.dispatch import receiver

from bookings.signals import booking_completed
from learning.models import BookingOutcome
from learning.services import outcome_record, pattern_learn_from_start, patterns_learn_from_outcome
from learning.signals import pickup_scored


@receiver(pickup_scored, dispatch_uid="learning.learn_from_start")
def learn_from_start(sender, booking, reading, error, **kwargs):
    pattern_learn_from_start(booking=booking, reading=reading, error=error)


@receiver(booking_completed, dispatch_uid="learning.record_outcome")
def record_outcome(sender, booking, battery_at_start, **kwargs):
    outcome_record(booking=booking, battery_at_start=battery_at_start)


@receiver(post_save, sender=BookingOutcome, dispatch_uid="learning.learn_from_outcome")
def learn_from_outcome(sender, instance, created, **kwargs):
    if created:
        patterns_learn_from_outcome(outcome=instance)
