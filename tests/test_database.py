"""How the service talks to Postgres: the hot path's repeated queries are prepared once per connection, and a
connection the server ended is replaced without a question to the server on every request."""

import tempfile
import time

import pytest
from django.db import connection

from bookings.models import Vehicle


@pytest.mark.postgres
@pytest.mark.django_db
def test_a_query_repeated_on_a_connection_becomes_a_prepared_statement(settings):
    Vehicle.objects.create(external_id="78")

    def prepared() -> int:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE %s", ['%"bookings_vehicle"%']
            )
            return cursor.fetchone()[0]

    before = prepared()
    for _ in range(settings.DATABASES["default"]["OPTIONS"]["prepare_threshold"] + 1):
        assert Vehicle.objects.get(external_id="78")
    assert prepared() == before + 1


def _terminated(pid: int) -> None:
    """End a backend from another connection, as a server restart or an administrator would."""
    import psycopg

    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    params.pop("prepare_threshold", None)
    with psycopg.connect(**params, autocommit=True) as other:
        assert other.execute("SELECT pg_terminate_backend(%s)", [pid]).fetchone()[0]


def _first_query_of_a_request() -> int:
    """What a request does first: Django's request_started handler, then a query. Returns the backend's pid."""
    connection.close_if_unusable_or_obsolete()
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_connection_the_server_ended_is_replaced_before_the_requests_first_query():
    from common.postgres.base import connection_quiet

    pid = _first_query_of_a_request()
    assert connection.health_check_enabled and connection_quiet(connection.connection)
    assert _first_query_of_a_request() == pid  # a quiet idle connection is kept

    _terminated(pid)
    deadline = time.monotonic() + 5
    while connection_quiet(connection.connection) and time.monotonic() < deadline:
        time.sleep(0.01)  # the server's goodbye reaches the socket
    assert not connection_quiet(connection.connection)

    assert _first_query_of_a_request() != pid  # replaced, and the request's query ran


def _sent_by(pgconn, action) -> str:
    """What libpq sent and received while `action` ran (its protocol trace)."""
    with tempfile.TemporaryFile() as trace:
        pgconn.trace(trace.fileno())
        try:
            action()
        finally:
            pgconn.untrace()
        trace.seek(0)
        return trace.read().decode()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_the_health_check_of_a_quiet_connection_sends_nothing():
    _first_query_of_a_request()
    pgconn = connection.connection.pgconn

    def health_check() -> None:
        connection.close_if_unusable_or_obsolete()  # request_started
        connection.close_if_health_check_failed()  # the request's first cursor

    assert _sent_by(pgconn, health_check) == ""
    assert connection.health_check_done and connection.connection.pgconn is pgconn
    # The trace does see a question: Django's own check, as it was before.
    assert "SELECT 1" in _sent_by(pgconn, connection.is_usable)
