"""Receivers of the callbacks app: thin, each calls one service."""

from django.dispatch import receiver

from callbacks.repricing import predictions_reprice_all_queue
from learning.signals import champion_promoted


@receiver(champion_promoted, dispatch_uid="callbacks.reprice_on_promotion")
def reprice_on_promotion(sender, version: str, **kwargs) -> None:
    """The new champion's numbers reach Laravel: every scheduled booking re-priced after the commit."""
    predictions_reprice_all_queue(triggered_by="model_promoted")
