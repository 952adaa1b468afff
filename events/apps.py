from django.apps import AppConfig


class EventsConfig(AppConfig):
    """The event workflow on top of the apps: the five webhooks, applied once each. It has no models."""

    name = "events"
    verbose_name = "Events (the booking webhooks' workflow)"
