"""`GET /metrics`: the service's own figures read from the database, next to django-prometheus' request metrics."""

from datetime import date, timedelta
from pathlib import Path

import pytest
import yaml
from django.core.cache import cache
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from prometheus_client.parser import text_string_to_metric_families

from batterypred import metrics
from bookings.models import InboundEvent
from callbacks.models import CallbackStatus, CircuitState, EndpointCircuit
from learning.champion import artifact_path, champion_forget
from learning.models import AccuracyMetric
from predictions.models import Prediction
from predictions.services import MODEL_VERSION
from tests.factories import CallbackOutboxFactory
from tests.modelling import champion_serve
from tests.seed_examples import CANCELLED, CREATED, PREDICT_HISTORICAL, PREDICT_REAL_TIME, STARTED, URL

pytestmark = pytest.mark.django_db

Samples = dict[tuple[str, frozenset], float]


def scrape(client: Client | None = None, **headers) -> Samples:
    response = (client or Client()).get("/metrics", **headers)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.content.decode())
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels) -> float:
    return samples[(name, frozenset(labels.items()))]


def names(samples: Samples) -> set[str]:
    return {name for name, _ in samples}


@pytest.fixture(autouse=True)
def _figures_read_fresh(settings):
    """Most tests here change the database between scrapes and read the figures as they are now; the cache
    window (METRICS_CACHE_SECONDS) is tested on its own below."""
    settings.METRICS_CACHE_SECONDS = 0


@pytest.fixture
def model_dir(settings, tmp_path) -> Path:
    settings.MODEL_DIR = tmp_path / "models"
    return settings.MODEL_DIR


def test_an_empty_service_reports_zeros_for_every_known_label():
    samples = scrape()

    assert value(samples, "batterypred_predictions_total", method="real_time_cascade") == 0
    assert value(samples, "batterypred_predictions_total", method="pattern_historical") == 0
    assert value(samples, "batterypred_events_total", event_type="booking.ended") == 0
    for status in ("pending", "delivered", "failed"):
        assert value(samples, "batterypred_outbox_callbacks", status=status) == 0
    assert value(samples, "batterypred_outbox_oldest_pending_age_seconds") == 0
    assert value(samples, "batterypred_model_info", version=MODEL_VERSION, kind="pattern-cascade") == 1
    assert "batterypred_model_champion_loaded" not in names(samples)
    assert value(samples, "batterypred_metrics_collect_success") == 1


def test_predictions_and_events_made_through_the_api_are_counted(post, settings):
    settings.ML_CALLBACK_URL = ""
    assert post(URL["predict"], PREDICT_HISTORICAL).status_code == 200
    assert post(URL["predict"], PREDICT_REAL_TIME).status_code == 200
    assert post(URL["created"], CREATED).status_code == 200
    assert post(URL["started"], STARTED).status_code == 200
    assert post(URL["started"], STARTED).status_code == 200  # the same webhook again: stored once
    assert post(URL["cancelled"], CANCELLED).status_code == 200

    samples = scrape()

    by_method = {
        method: value(samples, "batterypred_predictions_total", method=method)
        for method in Prediction.objects.values_list("prediction_method", flat=True).distinct()
    }
    assert sum(by_method.values()) == Prediction.objects.count() >= 4
    assert by_method["pattern_historical"] >= 1 and by_method["pattern_real_time_cascade"] >= 1
    assert value(samples, "batterypred_predictions_total", method="real_time") == 0  # no model serves
    assert value(samples, "batterypred_events_total", event_type="booking.created") == 1
    assert value(samples, "batterypred_events_total", event_type="booking.started") == 1
    assert value(samples, "batterypred_event_duplicates_total", event_type="booking.started") == 1
    assert value(samples, "batterypred_events_total", event_type="booking.cancelled") == 1
    assert value(samples, "batterypred_events_total", event_type="booking.ended") == 0
    assert InboundEvent.objects.count() == 3


def test_scored_error_is_summed_per_model_version_and_method_over_days():
    today = date(2025, 11, 3)
    for day, (n, abs_sum, sq, signed, w10, inside) in enumerate(
        [(4, 10.0, 30.0, -2.0, 3, 4), (6, 14.0, 50.0, 5.0, 5, 5)]
    ):
        AccuracyMetric.objects.create(
            date=today + timedelta(days=day),
            model_version="gbm-20251101",
            prediction_method="real_time_cascade",
            count=n,
            sum_abs_error=abs_sum,
            sum_sq_error=sq,
            sum_error=signed,
            within_10=w10,
            inside_interval=inside,
        )
    AccuracyMetric.objects.create(
        date=today, model_version=MODEL_VERSION, prediction_method="pattern_historical", count=2, sum_abs_error=9.0
    )

    samples = scrape()

    gbm = {"model_version": "gbm-20251101", "method": "real_time_cascade"}
    assert value(samples, "batterypred_prediction_scored_total", **gbm) == 10
    assert value(samples, "batterypred_prediction_abs_error_count", **gbm) == 10
    assert value(samples, "batterypred_prediction_abs_error_sum", **gbm) == 24.0  # MAE 2.4
    assert value(samples, "batterypred_prediction_squared_error_sum", **gbm) == 80.0
    assert value(samples, "batterypred_prediction_error_sum", **gbm) == 3.0
    assert value(samples, "batterypred_prediction_within_10_total", **gbm) == 8
    assert value(samples, "batterypred_prediction_inside_interval_total", **gbm) == 9
    pattern = {"model_version": MODEL_VERSION, "method": "pattern_historical"}
    assert value(samples, "batterypred_prediction_abs_error_sum", **pattern) == 9.0
    assert value(samples, "batterypred_prediction_scored_total", **pattern) == 2


def test_the_outbox_is_counted_by_status_with_the_oldest_pending_age():
    CallbackOutboxFactory(status=CallbackStatus.PENDING, age=timedelta(minutes=30))
    CallbackOutboxFactory(status=CallbackStatus.PENDING)
    CallbackOutboxFactory(status=CallbackStatus.FAILED, age=timedelta(days=3))
    for _ in range(3):
        CallbackOutboxFactory(status=CallbackStatus.DELIVERED, age=timedelta(hours=5))
    EndpointCircuit.objects.create(endpoint="http://laravel.internal/a", state=CircuitState.OPEN)

    samples = scrape()

    assert value(samples, "batterypred_outbox_callbacks", status="pending") == 2
    assert value(samples, "batterypred_outbox_callbacks", status="failed") == 1
    assert value(samples, "batterypred_outbox_callbacks", status="delivered") == 3
    assert value(samples, "batterypred_outbox_oldest_pending_age_seconds") == pytest.approx(1800, abs=10)
    assert value(samples, "batterypred_callback_circuits", state="open") == 1
    assert value(samples, "batterypred_callback_circuits", state="closed") == 0


def test_model_info_names_the_serving_champion_and_falls_back_when_its_artifact_breaks(model_dir):
    champion = champion_serve()

    samples = scrape()
    assert value(samples, "batterypred_model_info", version=champion.version, kind=champion.kind) == 1
    assert value(samples, "batterypred_model_champion_loaded", version=champion.version) == 1
    assert [key for key in samples if key[0] == "batterypred_model_info"] == [
        ("batterypred_model_info", frozenset({"version": champion.version, "kind": champion.kind}.items()))
    ]

    path = artifact_path(champion)
    path.write_text(path.read_text() + " ")
    champion_forget()

    samples = scrape()
    assert value(samples, "batterypred_model_info", version=MODEL_VERSION, kind="pattern-cascade") == 1
    assert value(samples, "batterypred_model_champion_loaded", version=champion.version) == 0


def test_request_metrics_of_django_prometheus_are_exported_too():
    Client().get("/health")

    samples = scrape()

    requests = {
        labels: count
        for (name, labels), count in samples.items()
        if name == "django_http_requests_total_by_view_transport_method_total"
    }
    assert any(dict(labels).get("view") == "health" and count >= 1 for labels, count in requests.items()), requests


def test_the_figures_survive_multiprocess_mode(monkeypatch, tmp_path):
    """With PROMETHEUS_MULTIPROC_DIR (several gunicorn workers) django-prometheus exports a fresh registry."""
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    CallbackOutboxFactory(status=CallbackStatus.PENDING)

    samples = scrape()

    assert value(samples, "batterypred_outbox_callbacks", status="pending") == 1
    assert value(samples, "batterypred_metrics_collect_success") == 1


def test_a_failing_section_is_flagged_and_does_not_hide_the_rest(monkeypatch):
    def broken():
        raise RuntimeError("table missing")
        yield  # pragma: no cover

    monkeypatch.setattr(metrics, "SECTIONS", (broken, *metrics.SECTIONS[1:]))

    samples = scrape()

    assert value(samples, "batterypred_metrics_collect_success") == 0
    assert "batterypred_predictions_total" not in names(samples)
    assert value(samples, "batterypred_outbox_callbacks", status="pending") == 0


def test_a_scrape_costs_the_same_queries_whatever_the_row_counts(django_assert_max_num_queries):
    with django_assert_max_num_queries(12) as few:
        scrape()
    for _ in range(20):
        CallbackOutboxFactory(status=CallbackStatus.DELIVERED)
    AccuracyMetric.objects.bulk_create(
        AccuracyMetric(date=date(2025, 1, 1) + timedelta(days=d), model_version="v", prediction_method="m", count=1)
        for d in range(30)
    )

    with django_assert_max_num_queries(len(few.captured_queries)):
        scrape()


def test_metrics_are_open_by_default_and_need_the_bearer_token_when_one_is_set(settings):
    assert Client().get("/metrics").status_code == 200

    settings.METRICS_BEARER_TOKEN = "scrape-secret"

    assert Client().get("/metrics").status_code == 401
    assert Client().get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    assert Client().post("/metrics").status_code == 405
    samples = scrape(HTTP_AUTHORIZATION="Bearer scrape-secret")
    assert value(samples, "batterypred_metrics_collect_success") == 1


def test_metrics_is_not_an_api_operation_in_the_schema():
    schema = yaml.safe_load(Client().get("/api/schema/").content)

    assert "/metrics" not in schema["paths"]
    assert "/api/v1/health" in schema["paths"]


# --- the cache window ---------------------------------------------------------------------------------------


def test_a_second_scrape_within_the_cache_window_runs_no_query(settings, django_assert_num_queries):
    settings.METRICS_CACHE_SECONDS = 15
    CallbackOutboxFactory(status=CallbackStatus.PENDING)
    with CaptureQueriesContext(connection) as first:
        assert value(scrape(), "batterypred_outbox_callbacks", status="pending") == 1
    assert len(first.captured_queries) >= 5  # the first scrape reads every table

    CallbackOutboxFactory(status=CallbackStatus.PENDING)
    with django_assert_num_queries(0):
        samples = scrape()
    assert value(samples, "batterypred_outbox_callbacks", status="pending") == 1  # as collected, within 15 s
    assert "django_http_requests_total_by_view_transport_method_total" in names(samples)  # never cached

    cache.delete(metrics.CACHE_KEY)  # the window has passed
    assert value(scrape(), "batterypred_outbox_callbacks", status="pending") == 2


def test_a_collection_that_failed_is_not_kept(settings, monkeypatch):
    settings.METRICS_CACHE_SECONDS = 15

    def broken():
        raise RuntimeError("database restarting")
        yield  # pragma: no cover

    monkeypatch.setattr(metrics, "SECTIONS", (broken, *metrics.SECTIONS[1:]))
    assert value(scrape(), "batterypred_metrics_collect_success") == 0
    monkeypatch.undo()
    settings.METRICS_CACHE_SECONDS = 15

    assert value(scrape(), "batterypred_metrics_collect_success") == 1


def test_with_a_zero_window_every_scrape_reads_the_database(settings):
    settings.METRICS_CACHE_SECONDS = 0
    scrape()
    with CaptureQueriesContext(connection) as again:
        scrape()
    assert len(again.captured_queries) >= 5


# --- who may scrape ---------------------------------------------------------------------------------------


def status_from(address: str, **headers) -> int:
    return Client().get("/metrics", REMOTE_ADDR=address, **headers).status_code


@pytest.mark.parametrize("address", ["127.0.0.1", "127.8.9.10", "::1", "::ffff:127.0.0.1"])
def test_with_debug_off_loopback_may_scrape(settings, address):
    settings.DEBUG = False

    assert status_from(address) == 200


@pytest.mark.parametrize("address", ["10.1.2.3", "192.168.0.7", "2001:db8::1", "::ffff:10.1.2.3", "not-an-ip", ""])
def test_with_debug_off_other_addresses_are_refused(settings, address):
    settings.DEBUG = False

    response = Client().get("/metrics", REMOTE_ADDR=address)

    assert response.status_code == 403
    assert b"METRICS_ALLOWED_NETWORKS" in response.content
    assert b"batterypred_" not in response.content


def test_configured_networks_may_scrape_and_replace_the_default(settings):
    settings.DEBUG = False
    settings.METRICS_ALLOWED_NETWORKS = ["10.0.0.0/8", "2001:db8::/32"]

    assert status_from("10.1.2.3") == 200
    assert status_from("2001:db8::1") == 200
    assert status_from("11.0.0.1") == 403
    assert status_from("127.0.0.1") == 403  # the list is the whole allow-list


def test_with_debug_on_any_address_may_scrape(settings):
    settings.DEBUG = True

    assert status_from("192.168.0.7") == 200


def test_a_bearer_token_is_required_from_anywhere_and_admits_any_address(settings):
    settings.DEBUG = False
    settings.METRICS_BEARER_TOKEN = "scrape-secret"

    assert status_from("127.0.0.1") == 401  # loopback too needs it
    assert status_from("10.1.2.3", HTTP_AUTHORIZATION="Bearer wrong") == 401
    assert status_from("10.1.2.3", HTTP_AUTHORIZATION="Bearer scrape-secret") == 200
