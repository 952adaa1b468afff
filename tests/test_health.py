"""`GET /api/v1/health`: each check judged from the real database, through HTTP, and the overall status it gives."""

import uuid
from datetime import timedelta
from pathlib import Path

import pytest
import requests
import schemathesis
import yaml
from django.db import OperationalError
from django.test import Client
from django.utils import timezone
from django_q.conf import Conf
from django_q.models import OrmQ, Schedule, Task
from rest_framework.test import APIClient

from batterypred import health_checks
from batterypred.wsgi import application
from callbacks.models import (
    CallbackAttempt,
    CallbackStatus,
    CircuitState,
    EndpointCircuit,
)
from common.api import permissions
from common.schedules import schedules_declare
from learning.champion import artifact_path, champion_forget
from predictions.services import MODEL_VERSION
from tests.factories import CallbackOutboxFactory
from tests.modelling import champion_serve

pytestmark = pytest.mark.django_db

URL = "/api/v1/health"
HEARTBEAT = "callbacks_dispatch_due"
OPERATION = schemathesis.openapi.from_wsgi("/api/schema/", application)[URL]["GET"]


def heartbeat_task(*, seconds_ago: float, success: bool = True) -> Task:
    """A finished run of the every-minute schedule, as the cluster records it."""
    at = timezone.now() - timedelta(seconds=seconds_ago)
    return Task.objects.create(
        id=uuid.uuid4().hex,
        name=f"run-{uuid.uuid4().hex[:8]}",
        func="callbacks.tasks.callbacks_dispatch_due",
        group=HEARTBEAT,
        started=at - timedelta(seconds=1),
        stopped=at,
        success=success,
    )


@pytest.fixture(autouse=True)
def callbacks_configured(settings):
    """A configured deployment: Laravel's receiver and the shared secret (the `callbacks` check is tested below)."""
    settings.ML_CALLBACK_URL = "http://laravel.internal/api/ml/predictions-updated"
    settings.ML_WEBHOOK_SECRET = "laravel-shared-secret"
    settings.ML_CALLBACKS_DISABLED = False


@pytest.fixture
def cluster_running(db) -> Schedule:
    """The state a running default cluster leaves: the schedule due within the minute, its last run a success."""
    schedules_declare()
    task = heartbeat_task(seconds_ago=20)
    Schedule.objects.filter(name=HEARTBEAT).update(next_run=timezone.now() + timedelta(seconds=40), task=task.id)
    return Schedule.objects.get(name=HEARTBEAT)


@pytest.fixture
def model_dir(settings, tmp_path) -> Path:
    settings.MODEL_DIR = tmp_path / "models"
    return settings.MODEL_DIR


def health(api) -> tuple[int, dict]:
    """GET the detailed health; every answer, whatever its state, must be one the OpenAPI schema declares."""
    response = api.get(URL)
    OPERATION.validate_response(
        schemathesis.Response(
            status_code=response.status_code,
            headers={name.lower(): [value] for name, value in response.headers.items()},
            content=response.content,
            request=requests.Request("GET", f"http://testserver{URL}").prepare(),
            elapsed=0.0,
            verify=True,
        )
    )
    return response.status_code, response.json()


# --- authentication and the contract ---------------------------------------------------------------


def test_the_detailed_health_needs_an_api_key_and_the_liveness_probe_does_not():
    response = APIClient().get(URL)

    assert response.status_code == 401
    assert response.json()["error"] == "not_authenticated"
    assert APIClient().get("/health").status_code == 200


def test_the_schema_documents_the_detailed_health_with_its_503():
    schema = yaml.safe_load(Client().get("/api/schema/").content)

    operation = schema["paths"][URL]["get"]
    assert {"200", "503", "401"} <= set(operation["responses"])
    assert operation["security"] == [{"ApiKeyAuth": []}]
    checks = schema["components"]["schemas"]["HealthChecks"]["properties"]
    assert set(checks) == {"database", "model", "task_queue", "outbox", "callbacks"}


# --- healthy --------------------------------------------------------------------------------------


def test_a_running_service_with_no_backlog_is_healthy(api, cluster_running, settings):
    settings.ML_CALLBACK_URL = "http://laravel.internal/api/ml/predictions-updated"

    code, body = health(api)

    assert code == 200
    assert body["status"] == "healthy", body
    assert (body["service"], body["version"]) == ("batterypred", "1.0.0")
    checks = body["checks"]
    assert {name: check["status"] for name, check in checks.items()} == dict.fromkeys(checks, "healthy")
    assert all("message" not in check for check in checks.values())
    assert checks["database"]["latency_ms"] >= 0
    assert checks["model"] == {
        "status": "healthy",
        "serving": "pattern_cascade",
        "version": MODEL_VERSION,
        "kind": "pattern-cascade",
        "champion": None,
    }
    queue = checks["task_queue"]
    assert (queue["lag_seconds"], queue["last_run_success"], queue["queued_tasks"]) == (0, True, 0)
    assert queue["broker"] == "orm" and queue["schedule"] == HEARTBEAT
    assert checks["outbox"] == {
        "status": "healthy",
        "enabled": True,
        "pending": 0,
        "failed": 0,
        "oldest_pending_age_seconds": None,
        "last_failure_at": None,
        "open_circuits": 0,
    }
    assert checks["callbacks"] == {
        "status": "healthy",
        "enabled": True,
        "disabled": False,
        "url_configured": True,
        "secret_configured": True,
    }


def test_a_champion_that_loads_is_healthy_and_named(api, cluster_running, model_dir):
    champion = champion_serve()

    code, body = health(api)

    assert (code, body["status"]) == (200, "healthy")
    model = body["checks"]["model"]
    assert (model["serving"], model["version"], model["champion"]) == ("model", champion.version, champion.version)
    assert model["kind"] == champion.kind


# --- degraded: the service answers, an operator is needed ----------------------------------------------


def test_a_champion_whose_artifact_was_tampered_with_is_degraded(api, cluster_running, model_dir):
    champion = champion_serve()
    path = artifact_path(champion)
    path.write_text(path.read_text() + " ")  # the checksum no longer matches
    champion_forget()  # as a restarted process would

    code, body = health(api)

    assert (code, body["status"]) == (200, "degraded")
    model = body["checks"]["model"]
    assert model["status"] == "degraded"
    assert (model["serving"], model["version"], model["champion"]) == (
        "pattern_cascade",
        MODEL_VERSION,
        champion.version,
    )
    assert champion.version in model["message"]
    assert body["checks"]["database"]["status"] == "healthy"


def test_an_old_pending_callback_degrades_and_a_fresh_one_does_not(api, cluster_running, settings):
    CallbackOutboxFactory(age=timedelta(seconds=30))
    code, body = health(api)
    assert (code, body["status"], body["checks"]["outbox"]["pending"]) == (200, "healthy", 1)

    CallbackOutboxFactory(age=timedelta(seconds=settings.HEALTH_OUTBOX_OLDEST_PENDING_WARN_SECONDS + 100))
    code, body = health(api)

    assert (code, body["status"]) == (200, "degraded")
    outbox = body["checks"]["outbox"]
    assert outbox["status"] == "degraded" and outbox["pending"] == 2
    assert outbox["oldest_pending_age_seconds"] == pytest.approx(
        settings.HEALTH_OUTBOX_OLDEST_PENDING_WARN_SECONDS + 100, abs=5
    )
    assert "HEALTH_OUTBOX_OLDEST_PENDING_WARN_SECONDS" in outbox["message"]

    settings.HEALTH_OUTBOX_OLDEST_PENDING_WARN_SECONDS = 3600  # the threshold is the setting's, read per call
    assert health(api)[1]["status"] == "healthy"


def test_too_many_pending_callbacks_degrade(api, cluster_running, settings):
    settings.HEALTH_OUTBOX_PENDING_WARN = 2
    for _ in range(3):
        CallbackOutboxFactory()

    body = health(api)[1]

    assert body["status"] == "degraded"
    assert "HEALTH_OUTBOX_PENDING_WARN" in body["checks"]["outbox"]["message"]


def test_an_open_circuit_degrades(api, cluster_running):
    EndpointCircuit.objects.create(endpoint="http://laravel.internal/a", state=CircuitState.CLOSED)
    assert health(api)[1]["status"] == "healthy"

    EndpointCircuit.objects.create(
        endpoint="http://laravel.internal/b", state=CircuitState.OPEN, consecutive_failures=5, opened_at=timezone.now()
    )
    body = health(api)[1]

    assert body["status"] == "degraded"
    assert body["checks"]["outbox"]["open_circuits"] == 1


@pytest.mark.parametrize(("hours_ago", "expected"), [(2, "degraded"), (30, "healthy")])
def test_a_failed_callback_degrades_while_its_failure_is_recent(api, cluster_running, hours_ago, expected):
    row = CallbackOutboxFactory(status=CallbackStatus.FAILED, age=timedelta(hours=hours_ago + 60))
    at = timezone.now() - timedelta(hours=hours_ago)
    CallbackAttempt.objects.create(outbox=row, number=9, started_at=at, webhook_timestamp=int(at.timestamp()))

    body = health(api)[1]

    assert body["status"] == expected
    outbox = body["checks"]["outbox"]
    assert outbox["failed"] == 1  # counted either way
    assert outbox["last_failure_at"].startswith(at.strftime("%Y-%m-%dT%H:%M"))


def test_a_scheduler_that_stopped_moving_means_the_queue_is_down_and_the_service_degraded(
    api, cluster_running, settings
):
    Schedule.objects.filter(name=HEARTBEAT).update(next_run=timezone.now() - timedelta(minutes=10))

    code, body = health(api)

    assert (code, body["status"]) == (200, "degraded")
    queue = body["checks"]["task_queue"]
    assert queue["status"] == "unhealthy"
    assert queue["lag_seconds"] == pytest.approx(600, abs=5)
    assert "not running" in queue["message"]

    settings.HEALTH_SCHEDULER_LAG_WARN_SECONDS = 900
    assert health(api)[1]["status"] == "healthy"


def test_a_schedule_that_moves_but_never_succeeds_means_no_worker_completes_it(api, cluster_running):
    Task.objects.all().delete()
    heartbeat_task(seconds_ago=3600)

    queue = health(api)[1]["checks"]["task_queue"]

    assert queue["status"] == "unhealthy"
    assert "no worker completes it" in queue["message"]


def test_a_failed_latest_run_degrades(api, cluster_running):
    failed = heartbeat_task(seconds_ago=5, success=False)
    Schedule.objects.filter(name=HEARTBEAT).update(task=failed.id)

    body = health(api)[1]

    assert body["status"] == "degraded"
    queue = body["checks"]["task_queue"]
    assert (queue["status"], queue["last_run_success"]) == ("degraded", False)


def test_a_missing_schedule_degrades(api, cluster_running):
    Schedule.objects.filter(name=HEARTBEAT).delete()

    queue = health(api)[1]["checks"]["task_queue"]

    assert queue["status"] == "degraded"
    assert "migrate" in queue["message"]


def test_queued_tasks_are_counted_and_a_backlog_degrades(api, cluster_running, settings):
    OrmQ.objects.create(key=Conf.CLUSTER_NAME, payload="x", lock=timezone.now() - timedelta(seconds=1))
    OrmQ.objects.create(key=Conf.CLUSTER_NAME, payload="y", lock=timezone.now() - timedelta(seconds=1))
    OrmQ.objects.create(key="training", payload="z", lock=timezone.now() - timedelta(seconds=1))

    queue = health(api)[1]["checks"]["task_queue"]
    assert (queue["status"], queue["queued_tasks"], queue["training_queued_tasks"]) == ("healthy", 2, 1)

    settings.HEALTH_TASK_QUEUE_BACKLOG_WARN = 1
    body = health(api)[1]
    assert body["status"] == "degraded"
    assert "HEALTH_TASK_QUEUE_BACKLOG_WARN" in body["checks"]["task_queue"]["message"]


def test_an_unreadable_broker_is_reported_not_raised(api, cluster_running, monkeypatch):
    def broken(cluster):
        raise ConnectionError("redis refused the connection")

    monkeypatch.setattr(health_checks, "_queue_size", broken)

    code, body = health(api)

    assert (code, body["status"]) == (200, "degraded")
    assert body["checks"]["task_queue"]["status"] == "unhealthy"
    assert "redis refused" in body["checks"]["task_queue"]["message"]


def test_a_slow_database_degrades(api, cluster_running, settings):
    settings.HEALTH_DATABASE_LATENCY_WARN_MS = -1.0

    code, body = health(api)

    assert (code, body["status"], body["checks"]["database"]["status"]) == (200, "degraded", "degraded")


@pytest.mark.parametrize(
    ("unset", "says"),
    [
        ("ML_CALLBACK_URL", "no callback is written"),
        ("ML_WEBHOOK_SECRET", "signed with an empty key"),
    ],
)
def test_callbacks_without_a_url_or_a_secret_degrade(api, cluster_running, settings, unset, says):
    setattr(settings, unset, "")

    code, body = health(api)

    assert (code, body["status"]) == (200, "degraded")
    callbacks = body["checks"]["callbacks"]
    assert (callbacks["status"], callbacks["enabled"]) == ("degraded", False)
    assert unset in callbacks["message"] and says in callbacks["message"]
    assert {name: check["status"] for name, check in body["checks"].items() if name != "callbacks"} == dict.fromkeys(
        ["database", "model", "task_queue", "outbox"], "healthy"
    )


def test_callbacks_with_neither_name_both(api, cluster_running, settings):
    settings.ML_CALLBACK_URL = settings.ML_WEBHOOK_SECRET = ""

    callbacks = health(api)[1]["checks"]["callbacks"]

    assert (callbacks["url_configured"], callbacks["secret_configured"]) == (False, False)
    assert "ML_CALLBACK_URL" in callbacks["message"] and "ML_WEBHOOK_SECRET" in callbacks["message"]
    assert "ML_CALLBACKS_DISABLED=1" in callbacks["message"]  # the way out for a deployment that wants none


def test_a_deployment_that_opted_out_of_callbacks_is_healthy(api, cluster_running, settings):
    settings.ML_CALLBACKS_DISABLED = True
    settings.ML_CALLBACK_URL = settings.ML_WEBHOOK_SECRET = ""

    code, body = health(api)

    assert (code, body["status"]) == (200, "healthy")
    assert body["checks"]["callbacks"] == {
        "status": "healthy",
        "enabled": False,
        "disabled": True,
        "url_configured": False,
        "secret_configured": False,
    }


# --- unhealthy: the database ----------------------------------------------------------------------


class _DownConnection:
    vendor = "postgresql"

    def cursor(self):
        raise OperationalError("connection refused")


def test_an_unreachable_database_is_a_503_and_skips_the_other_checks(api, monkeypatch):
    monkeypatch.setattr(health_checks, "connection", _DownConnection())

    code, body = health(api)

    assert (code, body["status"]) == (503, "unhealthy")
    assert body["checks"]["database"]["status"] == "unhealthy"
    assert "connection refused" in body["checks"]["database"]["message"]
    assert {body["checks"][name]["status"] for name in ("model", "task_queue", "outbox")} == {"unknown"}
    assert body["checks"]["callbacks"]["status"] == "healthy"  # settings only: still judged


def test_a_database_failure_while_checking_the_key_is_a_503_not_a_500(api, monkeypatch):
    def down(key):
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(permissions, "key_is_valid", down)

    code, body = health(api)

    assert (code, body["status"]) == (503, "unhealthy")
    assert "server closed the connection" in body["checks"]["database"]["message"]
    assert body["checks"]["outbox"] == {"status": "unknown", "message": "Not checked: the database cannot be reached."}


def test_a_check_that_breaks_is_reported_as_that_check_failing(api, cluster_running, monkeypatch):
    def broken():
        raise RuntimeError("boom")

    monkeypatch.setattr(health_checks, "outbox_check", broken)

    code, body = health(api)

    assert (code, body["status"]) == (200, "degraded")
    assert body["checks"]["outbox"] == {"status": "unhealthy", "message": "The outbox check failed: RuntimeError: boom"}
