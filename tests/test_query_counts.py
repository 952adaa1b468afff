"""Hot paths stay batched: the query count does not grow with the number of bookings cascaded."""

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from predictions.models import Prediction
from tests.modelling import champion_serve
from tests.seed_examples import CREATED, PREDICT_REAL_TIME, STARTED, URL

pytestmark = pytest.mark.django_db
T = datetime(2025, 11, 5, 10, 0, tzinfo=UTC)


def future(count: int, prefix: str) -> list[dict]:
    return [
        {
            "booking_id": f"{prefix}{i}",
            "user_id": str(i),
            "starts_at": (T + timedelta(hours=6 * i)).isoformat(),
            "ends_at": (T + timedelta(hours=6 * i + 2)).isoformat(),
        }
        for i in range(count)
    ]


def queries_for_start(post, car: str, count: int) -> tuple[int, int]:
    post(URL["created"], {**CREATED, "vehicle_id": car, "booking_id": f"{car}-B"})
    with CaptureQueriesContext(connection) as captured:
        body = post(
            URL["started"],
            {**STARTED, "vehicle_id": car, "booking_id": f"{car}-B", "future_bookings": future(count, car)},
        ).json()
    return len(captured.captured_queries), len(body["affected_bookings"])


def test_an_events_queries_do_not_grow_with_its_future_bookings(post):
    queries_for_start(post, "c0", 1)  # creates the day's accuracy row, which later events only update
    few, affected_few = queries_for_start(post, "c1", 10)
    many, affected_many = queries_for_start(post, "c2", 30)

    assert (affected_few, affected_many) == (10, 30)
    assert many == few  # 30 rows (of 27 columns) still fit one SQLite bulk insert; larger cascades insert in batches
    assert few <= 40


def test_a_prediction_takes_a_handful_of_queries(post):
    post(URL["predict"], PREDICT_REAL_TIME)
    with CaptureQueriesContext(connection) as captured:
        post(URL["predict"], PREDICT_REAL_TIME)
    assert len(captured.captured_queries) <= 14


def test_with_a_champion_an_events_queries_still_do_not_grow_with_its_future_bookings(post, settings, tmp_path):
    settings.MODEL_DIR = tmp_path
    settings.MODEL_REFRESH_SECONDS = 3600  # the registry re-check would otherwise land in one capture, not both
    champion = champion_serve()
    queries_for_start(post, "c0", 1)  # also loads the champion
    few, affected_few = queries_for_start(post, "c1", 10)
    many, affected_many = queries_for_start(post, "c2", 30)

    assert (affected_few, affected_many) == (10, 30)
    assert set(Prediction.objects.values_list("model_version", flat=True)) == {champion.version}
    assert many == few
    assert few <= 40  # the pattern cascade's bound still holds with the model's feature reads (car's, renters')
