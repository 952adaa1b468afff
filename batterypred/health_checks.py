"""Selectors behind `GET /api/v1/health`: is each part the service depends on working, and how well.

Each check returns a plain dict with a `status` (healthy, degraded, unhealthy, unknown) and the figures it
judged by, plus a `message` whenever it is not healthy, saying what is wrong and where to look. The overall
status is decided in one place (`health_report`):

- unhealthy (HTTP 503) only when the database cannot be reached: nothing can be served without it, so a
  load balancer or orchestrator should stop sending traffic to this process;
- degraded (HTTP 200) when something needs an operator but predictions are still answered: a champion model
  that does not load (the pattern cascade answers instead), a task queue that is not running (callbacks stop
  going out), a callback backlog or an open circuit, callbacks not configured (Laravel hears nothing);
- healthy otherwise.

The thresholds are settings (see `docs/operations.md`), read on every call so tests and operators can change them.
Every query here is an indexed lookup or a count over a small set of rows (pending callbacks, queued tasks):
the endpoint is meant to be polled.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import DatabaseError, connection
from django.db.models import Count, Max
from django.utils import timezone

from callbacks.models import CallbackOutbox, CallbackStatus, CircuitState, EndpointCircuit
from callbacks.selectors import outbox_backlog
from common.api.fields import iso
from learning.selectors import model_champion
from predictions.services import MODEL_VERSION

SERVICE = "batterypred"
HEALTHY, DEGRADED, UNHEALTHY, UNKNOWN = "healthy", "degraded", "unhealthy", "unknown"
CHECK_STATUSES = (HEALTHY, DEGRADED, UNHEALTHY, UNKNOWN)
OVERALL_STATUSES = (HEALTHY, DEGRADED, UNHEALTHY)

# The default cluster's every-minute schedule (callbacks/schedules.py). Its `next_run` moves forward only when
# a running cluster's scheduler picks it up, so how far it lies in the past tells whether the cluster runs.
HEARTBEAT_SCHEDULE = "callbacks_dispatch_due"
TRAINING_CLUSTER = "training"
PATTERN_KIND = "pattern-cascade"

Check = dict[str, Any]


def _not_healthy(check: Check, status: str, message: str) -> None:
    """Lower a check's status to `status` (never raise it) and add the reason to its message."""
    order = {HEALTHY: 0, DEGRADED: 1, UNHEALTHY: 2}
    if order[status] > order[check["status"]]:
        check["status"] = status
    check["message"] = f"{check['message']} {message}".strip() if check.get("message") else message


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc)[:200]}"


def database_check() -> Check:
    """`SELECT 1` on the default database, timed. Unreachable: unhealthy; slower than the threshold: degraded."""
    started = time.perf_counter()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except DatabaseError as exc:
        return {
            "status": UNHEALTHY,
            "vendor": connection.vendor,
            "message": f"The database cannot be reached: {_error(exc)}",
        }
    latency_ms = round((time.perf_counter() - started) * 1000, 2)
    check: Check = {"status": HEALTHY, "vendor": connection.vendor, "latency_ms": latency_ms}
    limit = settings.HEALTH_DATABASE_LATENCY_WARN_MS
    if latency_ms > limit:
        _not_healthy(check, DEGRADED, f"SELECT 1 took {latency_ms} ms (over HEALTH_DATABASE_LATENCY_WARN_MS={limit}).")
    return check


def model_check() -> Check:
    """What answers predictions in this process.

    No champion registered is healthy: the pattern cascade is a complete predictor (a fresh install serves
    with it until `train_model` runs). A registered champion whose artifact does not load (missing file,
    checksum mismatch) is degraded: the service answers, but not with the model the registry says it serves.
    """
    champion, serving = model_champion()
    if serving:
        return {
            "status": HEALTHY,
            "serving": "model",
            "version": champion.version,
            "kind": champion.kind,
            "champion": champion.version,
        }
    check: Check = {
        "status": HEALTHY,
        "serving": "pattern_cascade",
        "version": MODEL_VERSION,
        "kind": PATTERN_KIND,
        "champion": champion.version if champion is not None else None,
    }
    if champion is not None:
        _not_healthy(
            check,
            DEGRADED,
            f"The champion {champion.version} is registered but its artifact does not load (missing or checksum "
            "mismatch; see the log): the pattern cascade answers instead. Retrain, or promote another model.",
        )
    return check


def _queue_size(cluster: str | None) -> int:
    from django_q.brokers import get_broker  # django_q reads its settings on import

    return int(get_broker(cluster).queue_size())


def task_queue_check(*, now: datetime | None = None) -> Check:
    """Whether the default django-q2 cluster runs, judged from the database rather than django-q2's `Stat`.

    `Stat` lives in the cache, and each process has its own unless a shared cache is configured, so a web
    process cannot see the cluster's. Instead: the every-minute `callbacks_dispatch_due` schedule's `next_run`
    is moved forward by the cluster's scheduler (about every 30 s); overdue by more than
    HEALTH_SCHEDULER_LAG_WARN_SECONDS means no default cluster is running, so callbacks stop going out
    (unhealthy here; the service as a whole is degraded). A last successful run older than that threshold
    means the scheduler queues the task but no worker completes it. Its latest run having failed, or more
    queued tasks than HEALTH_TASK_QUEUE_BACKLOG_WARN, is degraded.
    """
    from django_q.models import Schedule, Task

    now = now or timezone.now()
    threshold = settings.HEALTH_SCHEDULER_LAG_WARN_SECONDS
    check: Check = {
        "status": HEALTHY,
        "broker": "redis" if settings.Q_CLUSTER.get("redis") else "orm",
        "schedule": HEARTBEAT_SCHEDULE,
    }
    schedule = Schedule.objects.filter(name=HEARTBEAT_SCHEDULE).values("next_run", "task").first()
    if schedule is None:
        check.update(next_run=None, lag_seconds=None, last_success_at=None, last_run_success=None)
        _not_healthy(
            check,
            DEGRADED,
            f"The {HEARTBEAT_SCHEDULE} schedule does not exist, so nothing retries callbacks: run `manage.py migrate`.",
        )
    else:
        next_run = schedule["next_run"]
        lag = max(0.0, (now - next_run).total_seconds()) if next_run else None
        last_success = Task.objects.filter(group=HEARTBEAT_SCHEDULE, success=True).aggregate(at=Max("stopped"))["at"]
        latest = Task.objects.filter(id=schedule["task"]).values("success").first() if schedule["task"] else None
        check.update(
            next_run=iso(next_run),
            lag_seconds=round(lag, 1) if lag is not None else None,
            last_success_at=iso(last_success),
            last_run_success=latest["success"] if latest else None,
        )
        if lag is not None and lag > threshold:
            _not_healthy(
                check,
                UNHEALTHY,
                f"{HEARTBEAT_SCHEDULE} is {lag:.0f} s overdue (over HEALTH_SCHEDULER_LAG_WARN_SECONDS={threshold}): "
                "the default django-q2 cluster is not running (`manage.py qcluster`), so callbacks are not sent.",
            )
        elif last_success is not None and (now - last_success).total_seconds() > threshold:
            _not_healthy(
                check,
                UNHEALTHY,
                f"{HEARTBEAT_SCHEDULE} last succeeded at {iso(last_success)}: it is scheduled but no worker "
                "completes it. Check the cluster's log.",
            )
        if latest is not None and not latest["success"]:
            _not_healthy(
                check,
                DEGRADED,
                f"The latest {HEARTBEAT_SCHEDULE} run failed: see Django Q > Failed tasks in the admin.",
            )
    try:
        check["queued_tasks"] = _queue_size(None)
        check["training_queued_tasks"] = _queue_size(TRAINING_CLUSTER)
    except Exception as exc:  # noqa: BLE001  (any broker failure, Redis or ORM, means the queue is unusable)
        _not_healthy(check, UNHEALTHY, f"The task broker cannot be read: {_error(exc)}")
    else:
        backlog = settings.HEALTH_TASK_QUEUE_BACKLOG_WARN
        if check["queued_tasks"] > backlog:
            _not_healthy(
                check,
                DEGRADED,
                f"{check['queued_tasks']} tasks wait on the default cluster (over HEALTH_TASK_QUEUE_BACKLOG_WARN="
                f"{backlog}): add workers (Q_WORKERS) or look for a stuck task.",
            )
    return check


def outbox_check(*, now: datetime | None = None) -> Check:
    """The callbacks owed to Laravel: how many wait, for how long, how many gave up, which circuits are open.

    Degraded when the oldest pending callback is older than HEALTH_OUTBOX_OLDEST_PENDING_WARN_SECONDS (Laravel
    has not had an update for that long), more than HEALTH_OUTBOX_PENDING_WARN wait, a circuit is open, or a
    callback exhausted its retries within HEALTH_OUTBOX_FAILED_WINDOW_SECONDS (an older failure is still
    counted in `failed` but no longer degrades: it has been seen; redeliver it from the admin).
    """
    now = now or timezone.now()
    backlog = outbox_backlog()
    failed = CallbackOutbox.objects.filter(status=CallbackStatus.FAILED).aggregate(
        n=Count("id", distinct=True), last=Max("attempt_log__started_at")
    )
    open_circuits = EndpointCircuit.objects.exclude(state=CircuitState.CLOSED).count()
    age = backlog.oldest_pending_age_seconds(now)
    oldest_age = None if age is None else round(age, 1)
    check: Check = {
        "status": HEALTHY,
        "enabled": bool(settings.ML_CALLBACK_URL),
        "pending": backlog.pending,
        "failed": failed["n"],
        "oldest_pending_age_seconds": oldest_age,
        "last_failure_at": iso(failed["last"]),
        "open_circuits": open_circuits,
    }
    age_limit = settings.HEALTH_OUTBOX_OLDEST_PENDING_WARN_SECONDS
    if oldest_age is not None and oldest_age > age_limit:
        _not_healthy(
            check,
            DEGRADED,
            f"The oldest pending callback waits for {oldest_age:.0f} s (over "
            f"HEALTH_OUTBOX_OLDEST_PENDING_WARN_SECONDS={age_limit}): Laravel is behind.",
        )
    pending_limit = settings.HEALTH_OUTBOX_PENDING_WARN
    if backlog.pending > pending_limit:
        _not_healthy(
            check,
            DEGRADED,
            f"{backlog.pending} callbacks are pending (over HEALTH_OUTBOX_PENDING_WARN={pending_limit}).",
        )
    if open_circuits:
        _not_healthy(
            check,
            DEGRADED,
            f"{open_circuits} callback endpoint circuit(s) open: deliveries are paused after repeated failures.",
        )
    window = settings.HEALTH_OUTBOX_FAILED_WINDOW_SECONDS
    if failed["last"] is not None and (now - failed["last"]).total_seconds() <= window:
        _not_healthy(
            check,
            DEGRADED,
            f"A callback exhausted its retries at {iso(failed['last'])} (within HEALTH_OUTBOX_FAILED_WINDOW_SECONDS="
            f"{window}): redeliver it from the admin (Predictions > Callbacks).",
        )
    return check


def callbacks_check() -> Check:
    """Whether re-predictions can reach Laravel at all: a callback URL and the secret that signs for it.

    Without ML_CALLBACK_URL no outbox row is written, so the callbacks are lost for good (setting the URL later
    does not bring them back); without ML_WEBHOOK_SECRET they are signed with an empty key, which Laravel's check
    refuses, so each one fails after its retries. Either is degraded, in development too (production refuses to
    start so, see settings). A deployment that wants no callbacks says so with ML_CALLBACKS_DISABLED=1: healthy.
    Reads settings only, so it is reported even while the database is down.
    """
    url, secret = bool(settings.ML_CALLBACK_URL), bool(settings.ML_WEBHOOK_SECRET)
    disabled = bool(settings.ML_CALLBACKS_DISABLED)
    check: Check = {
        "status": HEALTHY,
        "enabled": url and secret and not disabled,
        "disabled": disabled,
        "url_configured": url,
        "secret_configured": secret,
    }
    if disabled:
        return check
    if not url:
        _not_healthy(
            check,
            DEGRADED,
            "ML_CALLBACK_URL is empty: no callback is written, so Laravel never hears of a re-prediction and none "
            "is kept to send later. Set ML_CALLBACK_URL and ML_WEBHOOK_SECRET, or ML_CALLBACKS_DISABLED=1 if "
            "this deployment sends no callbacks.",
        )
    if not secret:
        _not_healthy(
            check,
            DEGRADED,
            "ML_WEBHOOK_SECRET is empty: callbacks would be signed with an empty key, which Laravel refuses. Set "
            "it to Laravel's ML_WEBHOOK_SECRET.",
        )
    return check


def _guarded(check: Any, name: str) -> Check:
    """Run one check; an unexpected error marks that check unhealthy rather than failing the whole report."""
    try:
        return check()
    except Exception as exc:  # noqa: BLE001  (a broken check must not turn the health endpoint into a 500)
        return {"status": UNHEALTHY, "message": f"The {name} check failed: {_error(exc)}"}


def _overall(checks: dict[str, Check]) -> str:
    if checks["database"]["status"] == UNHEALTHY:
        return UNHEALTHY
    if any(check["status"] != HEALTHY for check in checks.values()):
        return DEGRADED
    return HEALTHY


def health_report_database_down(exc: BaseException | None = None) -> dict[str, Any]:
    """The report when the database fails before the checks can run (e.g. while verifying the API key)."""
    database: Check = {"status": UNHEALTHY, "vendor": connection.vendor}
    database["message"] = "The database cannot be reached" + (f": {_error(exc)}" if exc else ".")
    skipped: Check = {"status": UNKNOWN, "message": "Not checked: the database cannot be reached."}
    checks = {"database": database, "model": dict(skipped), "task_queue": dict(skipped), "outbox": dict(skipped)}
    return _report({**checks, "callbacks": _guarded(callbacks_check, "callbacks")})


def _report(checks: dict[str, Check]) -> dict[str, Any]:
    return {
        "status": _overall(checks),
        "service": SERVICE,
        "version": settings.SPECTACULAR_SETTINGS["VERSION"],
        "timestamp": iso(timezone.now()),
        "checks": checks,
    }


def health_report() -> dict[str, Any]:
    """Every check and the overall status. When the database is down the checks that read it are skipped
    (`unknown`): each would only wait for its own connection timeout to report the same cause."""
    database = _guarded(database_check, "database")
    if database["status"] == UNHEALTHY:
        report = health_report_database_down()
        report["checks"]["database"] = database
        return report
    return _report(
        {
            "database": database,
            "model": _guarded(model_check, "model"),
            "task_queue": _guarded(task_queue_check, "task_queue"),
            "outbox": _guarded(outbox_check, "outbox"),
            "callbacks": _guarded(callbacks_check, "callbacks"),
        }
    )
