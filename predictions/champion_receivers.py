"""Receivers of the champion's promotion (`learning.champion.champion_promoted`): thin, each calls one service.

Apart from `predictions.receivers` (the booking signals) only so that the two can change independently.
"""

from django.dispatch import receiver

from learning.champion import champion_promoted
from predictions.shadow import shadow_forget_model


@receiver(champion_promoted, dispatch_uid="predictions.shadow_forget_on_promotion")
def shadow_forget_on_promotion(sender, version: str, **kwargs) -> None:
    """The `model` candidate's shadow scores were the previous champion's: the new one is judged on its own."""
    shadow_forget_model()
