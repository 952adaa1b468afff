"""Django's Postgres backend, whose per-request health check looks at the socket before it asks the server.

Why: with persistent connections (CONN_MAX_AGE) and CONN_HEALTH_CHECKS, Django sends `SELECT 1` before the first
query of every request, so a connection the server dropped (a restart, a terminated backend, a pooler's timeout)
is replaced instead of failing the request. That round trip was 7-8 % of a predict worker's time under load
(docs/performance.md). A server that ends a connection says so on the socket: it sends a FATAL message, or the
kernel an end of file or a reset. An idle connection, between requests, has nothing else to read. So a socket
with nothing to read, on a connection libpq calls healthy and idle, needs no question; one with anything to read
gets Django's `SELECT 1` as before, and is replaced if that fails.

What the socket cannot show is what `SELECT 1` could not show quickly either: a peer gone silent without closing
(a cut cable), which only TCP's timeouts end.
"""

from __future__ import annotations

import select

from django.db.backends.postgresql import base as postgresql
from psycopg import pq


def connection_quiet(connection: object) -> bool:
    """True when a psycopg connection is open, idle outside a transaction, and nothing has arrived on its socket."""
    pgconn = connection.pgconn  # type: ignore[attr-defined]
    if pgconn.status != pq.ConnStatus.OK or pgconn.transaction_status != pq.TransactionStatus.IDLE:
        return False
    try:
        readable, _, _ = select.select([pgconn.socket], [], [], 0)
    except (OSError, ValueError):  # no socket any more
        return False
    return not readable


class DatabaseWrapper(postgresql.DatabaseWrapper):
    def close_if_health_check_failed(self) -> None:
        if (
            self.connection is not None
            and self.health_check_enabled
            and not self.health_check_done
            and not self.pool
            and connection_quiet(self.connection)
        ):
            self.health_check_done = True
            return
        super().close_if_health_check_failed()
