"""What every bench shares: the service as `make run` starts it, Postgres databases, timing figures, tables, JSON.

The benches run as modules from the repository root (`.venv/bin/python -m bench.serving`), so the project's
packages import as they do in the app; nothing here edits `sys.path`.
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import platform
import re
import secrets
import shutil
import signal
import socket
import string
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
HOST = "127.0.0.1"
POSTGRES = "postgres://postgres@127.0.0.1:5432/"
# The tree whose service the benches start (manage.py, gunicorn): this one unless BENCH_SERVICE_ROOT names another
# checkout, to time an older commit's service with today's bench (the same workload on both).
SERVICE_ROOT = Path(os.environ.get("BENCH_SERVICE_ROOT") or ROOT).resolve()


class BenchError(RuntimeError):
    """The benchmark could not be set up or run to the end."""


def parser_for(doc: str | None) -> argparse.ArgumentParser:
    """An argument parser whose description is the module docstring's first paragraph."""
    return argparse.ArgumentParser(description=(doc or "").split("\n\n")[0])


def machine_info() -> dict[str, Any]:
    return {
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "date": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "load_average": os.getloadavg(),
    }


def iso(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def write_json(path: Path, payload: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=1, default=str) + "\n")
    return path


# --- figures and tables ----------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default); `values` need not be sorted."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    position = (len(ordered) - 1) * q
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def text_table(rows: list[list[str]], *, left: Sequence[int] = (0,), rule: bool = True) -> str:
    """Rows of cells (the first is the header) in aligned columns: `left` columns ljust, the others rjust."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    lines = [line(row) for row in rows]
    if rule:
        lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def timed(label: str, run: Callable[[], Any]) -> tuple[Any, float]:
    """Run `run()`; print and return its result and seconds."""
    started = time.perf_counter()
    result = run()
    seconds = time.perf_counter() - started
    print(f"{label} in {seconds:.1f} s", flush=True)
    return result, seconds


# --- Postgres ----------------------------------------------------------------------------------------------


def database_name(url: str) -> str:
    name = urlsplit(url).path.lstrip("/")
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,62}", name):
        raise BenchError(f"database name {name!r} in {url} is not a plain identifier")
    return name


def psql(url: str, sql: str, database: str = "postgres") -> str:
    """Run `sql` on the same server's `database` (by default `postgres`, to create and drop others)."""
    target = urlunsplit(("postgresql", urlsplit(url).netloc, f"/{database}", "", ""))
    done = subprocess.run(
        ["psql", target, "-v", "ON_ERROR_STOP=1", "-tAc", sql],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise BenchError(f"psql failed ({sql}): {done.stderr.strip()}")
    return done.stdout.strip()


def database_exists(url: str) -> bool:
    return psql(url, f"SELECT 1 FROM pg_database WHERE datname = '{database_name(url)}'") == "1"


def database_create(url: str) -> str:
    """Drop and create the database; return the server's version."""
    name = database_name(url)
    database_drop(url)
    psql(url, f'CREATE DATABASE "{name}"')
    return psql(url, "SHOW server_version")


def database_drop(url: str) -> None:
    psql(url, f'DROP DATABASE IF EXISTS "{database_name(url)}" WITH (FORCE)')


# --- the service's settings, manage.py ---------------------------------------------------------------------


def server_env(database_url: str, **extra: str) -> dict[str, str]:
    """Production settings (DEBUG off, a random secret key) on plain HTTP on loopback, no rate limit."""
    alphabet = string.ascii_letters + string.digits
    env = dict(os.environ)
    env.update(
        {
            "DATABASE_URL": database_url,
            "DJANGO_SETTINGS_MODULE": "batterypred.settings",
            "DJANGO_DEBUG": "0",
            "DJANGO_SECRET_KEY": "".join(secrets.choice(alphabet) for _ in range(50)),
            "API_RATE_LIMIT": "1000000/min",
            "LOG_LEVEL": "WARNING",
            # Production settings, served over plain HTTP on loopback: no redirect to HTTPS, no secure-only cookies.
            "DJANGO_SECURE_SSL_REDIRECT": "0",
            "DJANGO_SECURE_COOKIES": "0",
        }
    )
    env.update(extra)
    if not (env.get("ML_CALLBACK_URL") and env.get("ML_WEBHOOK_SECRET")):
        env["ML_CALLBACKS_DISABLED"] = "1"  # the benchmarks measure the service, not deliveries to Laravel
    return env


def django_setup(env: dict[str, str]) -> None:
    """Start Django in this process with `env` (for the benches that call the service in-process)."""
    import warnings

    import django

    os.environ.update(env)
    warnings.filterwarnings("ignore", message="No directory at")  # static files are not collected here
    django.setup()


def manage(env: dict[str, str], *args: str, root: Path = SERVICE_ROOT) -> str:
    """`manage.py` of the service in `root` (by default the one the benches start)."""
    done = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=root, env=env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise BenchError(f"manage.py {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return done.stdout


def api_key_create(env: dict[str, str], root: Path = SERVICE_ROOT) -> str:
    lines = [
        line for line in manage(env, "create_api_key", f"bench-{int(time.time())}", root=root).splitlines() if line
    ]
    if not lines:
        raise BenchError("create_api_key printed no key")
    return lines[-1].strip()


# --- gunicorn -------------------------------------------------------------------------------------------


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def server_start(env: dict[str, str], workers: int, extra: tuple[str, ...] = (), root: Path = SERVICE_ROOT) -> Server:
    """gunicorn serving the tree `root` on a free port, with its output in a temporary log."""
    port = free_port()
    gunicorn = root / ".venv" / "bin" / "gunicorn"
    gunicorn = gunicorn if gunicorn.exists() else Path(sys.executable).with_name("gunicorn")
    fd, log_name = tempfile.mkstemp(prefix="batterypred-bench-gunicorn-", suffix=".log")
    with os.fdopen(fd, "wb") as log:
        process = subprocess.Popen(
            [str(gunicorn), "batterypred.wsgi", "--bind", f"{HOST}:{port}", "--workers", str(workers), *extra],
            cwd=root,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Server(process, port, Path(log_name))


def server_wait_healthy(server: Server, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise BenchError(f"gunicorn exited with status {server.process.returncode}")
        conn = http.client.HTTPConnection(HOST, server.port, timeout=2)
        try:
            conn.request("GET", "/health")
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        finally:
            conn.close()
        time.sleep(0.1)
    raise BenchError(f"GET /health did not answer 200 within {timeout:.0f} s")


def server_stop(server: Server) -> None:
    """Stop the gunicorn master we started (it stops its workers), killing it if it hangs."""
    if server.process.poll() is not None:
        return
    server.process.send_signal(signal.SIGTERM)
    try:
        server.process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait(timeout=5)


def log_text(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError as exc:
        return f"(cannot read {path}: {exc})"


def log_tail(path: Path, lines: int = 60) -> str:
    return "\n".join(log_text(path).splitlines()[-lines:])


def log_first_error(path: Path, lines: int = 80) -> str | None:
    """The first error the server logged (Django's "Internal Server Error" and its traceback)."""
    text = log_text(path).splitlines()
    first = next((i for i, line in enumerate(text) if " ERROR " in line or line.startswith("Traceback")), None)
    return None if first is None else "\n".join(text[first : first + lines])


def log_tracebacks(path: Path) -> int:
    return log_text(path).count("Traceback (most recent call last)")


# --- a served copy of a prepared SQLite directory (the accuracy benches) -----------------------------------


def service_env(workdir: Path) -> dict[str, str]:
    env = server_env(f"sqlite:///{workdir / 'bench.sqlite3'}")
    return env | {"MODEL_DIR": str(workdir / "models"), "ML_CALLBACK_URL": "", "ML_CALLBACKS_DISABLED": "1"}


def service_prepare(workdir: Path, *, model: bool, train_args: tuple[str, ...] = ()) -> Path:
    """A migrated SQLite database, an API key and, with `model`, the bootstrap champion, all in `workdir`.

    The bootstrap model is trained on simulator seed 1001 (`train_model --synthetic`), never on the
    replayed stream. The directory is self-contained (the registry stores artifact paths relative
    to MODEL_DIR), so `service_copy` can serve copies of it.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    env = service_env(workdir)
    manage(env, "migrate", "--noinput", "-v0")
    (workdir / "api-key").write_text(api_key_create(env))
    if model:
        manage(env, "train_model", "--synthetic", "--seed", "1001", *train_args)
    return workdir


def service_copy(template: Path, workdir: Path) -> Path:
    """A fresh copy of a prepared directory: the same database, key and model, none of another replay's data."""
    shutil.copytree(template, workdir)
    return workdir


class Service:
    """The service on a prepared SQLite directory (`service_prepare`), served by one gunicorn worker."""

    def __init__(self, workdir: Path, env: dict[str, str] | None = None) -> None:
        self.env = service_env(workdir) | (env or {})
        self.key = (workdir / "api-key").read_text().strip()
        self.server = server_start(self.env, 1)
        server_wait_healthy(self.server, timeout=60)
        self.conn = http.client.HTTPConnection(HOST, self.server.port, timeout=60)

    def post(self, path: str, body: dict) -> tuple[int, dict]:
        data = json.dumps(body).encode()
        self.conn.request("POST", path, data, {"Content-Type": "application/json", "X-API-Key": self.key})
        response = self.conn.getresponse()
        payload = response.read()
        try:
            return response.status, json.loads(payload or b"{}")
        except json.JSONDecodeError:  # a server error's HTML page: say which call and what it answered
            raise BenchError(f"{path} answered {response.status}, not JSON: {payload[:300]!r}") from None

    def get(self, path: str) -> dict:
        self.conn.request("GET", path, headers={"X-API-Key": self.key})
        return json.loads(self.conn.getresponse().read())

    def stop(self) -> None:
        self.conn.close()
        server_stop(self.server)


# --- the whole service in this process (the Postgres benches) ----------------------------------------------


def replay_in_process(
    sim: Any,
    *,
    until: datetime | None = None,
    laravel: Callable[[Any], Any] | None = None,
    dispatch_every: int = 200,
) -> dict[str, float]:
    """Send every call of a simulated stream (up to `until`) through the service in-process, in time order.

    Django's test client and an API key go through the serializers, event services, cascade and outbox, as
    over HTTP. Callbacks (on when ML_CALLBACK_URL is set) are delivered by the real outbox code every
    `dispatch_every` calls to `laravel`, an httpx handler standing in for Laravel (200 by default): no network.
    The clock is at each call's simulated time while it is handled (time-machine), so every stored timestamp
    (received, created, attempted) is the fleet's, not the moment of the replay.
    Call after `django_setup`.
    """
    import httpx
    import time_machine
    from django.test import Client
    from rest_framework_api_key.models import APIKey

    from callbacks import services as outbox

    calls = [call for call in sim.calls if until is None or call.at <= until]
    _, key = APIKey.objects.create_key(name="bench-replay")
    client = Client(secure=True, HTTP_X_API_KEY=key)
    handler = laravel or (lambda request: httpx.Response(200, json={"ok": True}))
    outbox._client = lambda: httpx.Client(transport=httpx.MockTransport(handler))  # the outbox's one way out

    started, errors = time.monotonic(), 0
    for i, call in enumerate(calls, start=1):
        clock = time_machine.travel(call.at, tick=True)
        clock.start()
        try:
            response = client.post(call.path, data=json.dumps(call.body), content_type="application/json")
            if response.status_code >= 500 or 300 <= response.status_code < 400:  # a redirect stores nothing either
                raise BenchError(f"{call.path} answered {response.status_code}: {response.content[:500]!r}")
            errors += response.status_code >= 400
            if i % dispatch_every == 0 or i == len(calls):
                while outbox.callbacks_dispatch_due().more:
                    pass
        finally:
            clock.stop()
        if i % 1000 == 0:
            print(f"  {i}/{len(calls)} calls ({i / (time.monotonic() - started):.0f}/s)", flush=True)
    bookings = len(sim.bookings)
    return {
        "calls": len(calls),
        "calls_4xx": errors,
        "bookings": bookings,
        "bookings_per_car_day": bookings / len(sim.cars) / sim.config.days,
        "replay_seconds": round(time.monotonic() - started, 1),
    }
