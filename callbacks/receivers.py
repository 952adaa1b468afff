"""Receivers of the callbacks app: thin, each calls one service."""

from django.dispatch import receiver

from callbacks.readiness import readiness_changes_enqueue
from callbacks.repricing import predictions_reprice_all_queue
from learning.signals import champion_promoted
from predictions.signals import predictions_stored


@receiver(champion_promoted, dispatch_uid="callbacks.reprice_on_promotion")
def reprice_on_promotion(sender, version: str, **kwargs) -> None:
    """The new champion's numbers reach Laravel: every scheduled booking re-priced after the commit."""
    predictions_reprice_all_queue(triggered_by="model_promoted")


@receiver(predictions_stored, dispatch_uid="callbacks.readiness_on_store")
def readiness_on_store(sender, vehicle, predictions, bookings, trigger: str, event, present, **kwargs) -> None:
    """A booking whose at-risk state changed owes Laravel a `booking.readiness_changed`, in the same transaction."""
    readiness_changes_enqueue(
        vehicle=vehicle, predictions=predictions, bookings=bookings, trigger=trigger, event=event, present=present
    )
