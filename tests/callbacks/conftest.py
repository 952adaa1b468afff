"""Callback fixtures: a local receiver, and settings that point the outbox at it."""

import pytest

from tests.callbacks.receiver import Receiver

SECRET = "laravel-shared-secret"


@pytest.fixture
def receiver(settings):
    """A receiver answering 200 (script it with `receiver.script`); ML_CALLBACK_URL points at it."""
    server = Receiver(secret=SECRET).start()
    settings.ML_CALLBACK_URL = server.url
    settings.ML_WEBHOOK_SECRET = SECRET
    settings.ML_CALLBACK_TIMEOUT_SECONDS = 5.0
    yield server
    server.stop()


@pytest.fixture
def make_predictions(db):
    """`make_predictions(n, car="78")`: n stored current predictions of one car's bookings, as a cascade leaves them."""
    from datetime import timedelta

    from django.utils import timezone

    from bookings.models import Vehicle
    from predictions.models import Prediction, PredictionMethod

    counter = {"n": 0}

    def _make(n: int, car: str = "78") -> list[Prediction]:
        vehicle, _ = Vehicle.objects.get_or_create(external_id=car)
        now = timezone.now()
        rows = []
        for i in range(n):
            counter["n"] += 1
            level = 40.0 + i
            rows.append(
                Prediction.objects.create(
                    prediction_id=f"PRED_CB{counter['n']}",
                    booking_external_id=f"BK-{car}-{counter['n']}",
                    vehicle=vehicle,
                    predicted_at=now,
                    booking_start_time=now + timedelta(hours=3 * (i + 1)),
                    predicted_battery=level,
                    confidence_lower=level - 8,
                    confidence_upper=level + 8,
                    prediction_method=PredictionMethod.REAL_TIME_CASCADE,
                    model_version="pattern-cascade-1.0",
                    trigger="booking.started",
                    is_current=True,
                )
            )
        return rows

    return _make


@pytest.fixture
def staff_client(db, client, django_user_model):
    """A logged-in superuser without a password (hashing one costs a second per test)."""
    client.force_login(django_user_model.objects.create_superuser("ops", "ops@example.com", None))
    return client
