"""Thin receivers: booking signals trigger the cascade and scoring, a promotion resets the model's shadow scores."""

from django.dispatch import receiver

from bookings.signals import bookings_marked_no_show, schedule_changed, start_level_observed
from learning.signals import champion_promoted
from predictions.services import predictions_cancel, predictions_cascade, predictions_score_pickup
from predictions.shadow import shadow_forget_model


@receiver(schedule_changed, dispatch_uid="predictions.cascade_on_schedule_changed")
def cascade_on_schedule_changed(sender, vehicle, pivot, event, **kwargs):
    predictions_cascade(vehicle=vehicle, pivot=pivot, event=event)


@receiver(start_level_observed, dispatch_uid="predictions.score_on_start")
def score_on_start(sender, booking, reading, **kwargs):
    predictions_score_pickup(booking=booking, reading=reading)


@receiver(bookings_marked_no_show, dispatch_uid="predictions.cancel_no_shows")
def cancel_no_shows(sender, booking_ids, **kwargs):
    predictions_cancel(booking_ids=booking_ids)


@receiver(champion_promoted, dispatch_uid="predictions.shadow_forget_on_promotion")
def shadow_forget_on_promotion(sender, version, **kwargs):
    """The `model` candidate's shadow scores were the previous champion's: the new one is judged on its own."""
    shadow_forget_model()
