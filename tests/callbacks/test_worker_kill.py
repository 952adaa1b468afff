"""kill -9 of the worker in the middle of a backlog loses no callback.

A real `manage.py qcluster` runs against the test database (Postgres: the subprocess must see the
rows this test commits, and row locks must be real). It is killed with SIGKILL, together with its
child processes, while it is delivering to a slow receiver; a new worker then finishes the job:
the tasks the dead worker had not taken yet are run, and the ones it had taken (lost with it) are
found by the periodic `callbacks_dispatch_due` schedule, since their rows are still pending.
Duplicates are allowed (at-least-once); losses are not.
"""

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import pytest
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from django_q.models import OrmQ, Schedule

from callbacks.models import CallbackOutbox, CallbackStatus
from callbacks.services import callback_enqueue
from common.schedules import schedules_declare
from tests.callbacks.conftest import SECRET

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]
CALLBACKS = 50


def test_database_url() -> str:
    db = connection.settings_dict
    auth = quote(db["USER"] or "") + (f":{quote(db['PASSWORD'])}" if db["PASSWORD"] else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


test_database_url.__test__ = False  # a helper, not a test


def start_worker(log: Path) -> subprocess.Popen:
    env = {
        **os.environ,
        "DATABASE_URL": test_database_url(),
        "ML_WEBHOOK_SECRET": SECRET,
        "ML_CALLBACK_TIMEOUT_SECONDS": "2",  # a short lease, so rows claimed by the dead worker are due again soon
        "Q_WORKERS": "2",
        "LOG_LEVEL": "WARNING",
    }
    env.pop("Q_CLUSTER_NAME", None)
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "manage.py", "qcluster"],
            cwd=settings.BASE_DIR,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: the kill reaches every process of the cluster
        )


def stop(worker: subprocess.Popen, sig: int) -> None:
    """Send `sig` to the worker's whole process group (the cluster's sentinel, pusher, monitor and workers)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(worker.pid, sig)
    worker.wait(timeout=15)


def wait_for(condition: Callable[[], bool], seconds: float, what: str, log: Path) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {seconds} s waiting for {what}; worker log:\n{log.read_text()[-4000:]}")
        time.sleep(0.1)


def test_a_worker_killed_mid_backlog_loses_no_callback(receiver, make_predictions, tmp_path):
    receiver.delay = 0.2  # slow enough that the kill lands while requests are in flight
    schedules_declare()
    Schedule.objects.filter(name="callbacks_dispatch_due").update(next_run=timezone.now())  # due: runs at first tick
    ids = []
    for _ in range(CALLBACKS):
        with transaction.atomic():  # each callback commits on its own, queuing its delivery task
            ids.append(str(callback_enqueue(predictions=make_predictions(1), triggered_by="retrain", metadata={}).pk))
    assert OrmQ.objects.count() == CALLBACKS
    log = tmp_path / "qcluster.log"
    workers = []
    try:
        workers.append(start_worker(log))
        wait_for(lambda: len(receiver.received) >= 10, 30, "the first worker to deliver 10 callbacks", log)
        stop(workers[0], signal.SIGKILL)
        received_before_kill = len(receiver.received)
        assert received_before_kill < CALLBACKS, "the kill came too late to test anything"

        workers.append(start_worker(log))
        wait_for(
            lambda: CallbackOutbox.objects.filter(status=CallbackStatus.DELIVERED).count() == CALLBACKS,
            60,  # its scheduler's first tick, ~30 s after it starts, queues the dispatch that finds the lost ones
            "the second worker to deliver every callback",
            log,
        )
    finally:
        for worker in workers:
            stop(worker, signal.SIGKILL)  # a graceful stop takes seconds and proves nothing here

    assert set(receiver.accepted_ids) == set(ids)  # every callback arrived at least once
    assert CallbackOutbox.objects.exclude(status=CallbackStatus.DELIVERED).count() == 0
    assert all(r.hex_ok and r.standard_ok for r in receiver.received)
