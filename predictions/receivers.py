"""Thin receivers: a changed schedule triggers the cascade service."""

from django.dispatch import receiver

from bookings.signals import schedule_changed
from predictions.services import predictions_cascade


@receiver(schedule_changed, dispatch_uid="predictions.cascade_on_schedule_changed")
def cascade_on_schedule_changed(sender, vehicle, pivot, event, **kwargs):
    return predictions_cascade(vehicle=vehicle, pivot=pivot, event=event)
