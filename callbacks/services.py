"""Callbacks to Laravel: a transactional outbox, signed deliveries, retries with backoff, a circuit per endpoint.

`callback_enqueue` writes the `predictions.updated` callback in the caller's transaction and queues
its delivery for after the commit. `callback_deliver` makes one attempt; `callbacks_dispatch_due`
(every minute, and after a backlog) delivers every due row in creation order. Delivery is
at-least-once: the body and its `id` never change between attempts, so Laravel can drop duplicates.

How an attempt runs, and why:

1. Claim (short transaction): lock the row (`SKIP LOCKED`, so two workers never send one row at once),
   check it is still pending and due, consult the endpoint's circuit, then push `next_attempt_at`
   forward by a lease and log the attempt as started. The HTTP request is made *outside* any
   transaction: a slow Laravel must not hold a database lock (on SQLite that would block every write).
2. POST the stored bytes with `X-ML-Signature` and the Standard Webhooks headers.
3. Record (short transaction): complete the attempt; delivered on a 2xx, else schedule the next
   attempt (backoff with jitter, or the server's `Retry-After`) or give up after the last one; update
   the circuit.

A worker killed between 1 and 3 leaves the row pending with its lease as `next_attempt_at`, so the
dispatcher sends it again once the lease runs out: a duplicate is possible, a loss is not.
"""

from __future__ import annotations

import functools
import json
import logging
import random
import ssl
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime

import httpx
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from bookings.services import booking_readiness_untold
from callbacks.models import (
    CallbackAttempt,
    CallbackItem,
    CallbackOutbox,
    CallbackStatus,
    CircuitState,
    EndpointCircuit,
)
from common.api.fields import iso
from common.api.signatures import sign_hex, standard_signature
from common.queue import queue_on_commit
from common.rows import insert
from predictions.bodies import callback_item
from predictions.models import Prediction

logger = logging.getLogger(__name__)

EVENT = "predictions.updated"
READINESS_EVENT = "booking.readiness_changed"  # callbacks/readiness.py writes them
DELIVER_TASK = "callbacks.tasks.callback_deliver"
DISPATCH_TASK = "callbacks.tasks.callbacks_dispatch_due"

# Wait after the 1st, 2nd, ... failed attempt; the last failure after these marks the callback failed.
# 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 24 h, 24 h: nine attempts spread over 2 days 17.5 hours, which
# rides out a Laravel deploy, an outage of an afternoon, or a weekend of a broken endpoint.
RETRY_SCHEDULE: tuple[timedelta, ...] = (
    timedelta(seconds=5),
    timedelta(minutes=5),
    timedelta(minutes=30),
    timedelta(hours=2),
    timedelta(hours=5),
    timedelta(hours=10),
    timedelta(hours=24),
    timedelta(hours=24),
)
MAX_ATTEMPTS = len(RETRY_SCHEDULE) + 1
JITTER = 0.2  # each wait is drawn from [0.8, 1.2] x its nominal value so retries of many rows spread out
RETRY_AFTER_MAX = timedelta(hours=24)  # a Retry-After further out than this is taken as this
RETRY_AFTER_MIN = timedelta(seconds=1)

CIRCUIT_FAILURE_THRESHOLD = 5  # consecutive failed attempts that open an endpoint's circuit
CIRCUIT_COOLDOWN = timedelta(seconds=60)  # how long an open circuit waits before one probe

POSTPONE_MARGIN = timedelta(seconds=1)  # a covered row is looked at again this long after the newer ones are due
LEASE_MARGIN = timedelta(seconds=15)  # added to the request timeout: how long a claimed row stays claimed
DISPATCH_BUDGET_SECONDS = 30.0  # one dispatch run stops starting requests after this (the task timeout is 60 s)
DISPATCH_BATCH = 500
RESPONSE_EXCERPT_CHARS = 500


class Outcome:
    """What one call of `callback_deliver` did."""

    DELIVERED = "delivered"
    RETRY = "retry"  # failed; another attempt is scheduled
    FAILED = "failed"  # failed; no attempts left
    CIRCUIT_OPEN = "circuit_open"  # not attempted: the endpoint's circuit is open
    SKIPPED = "skipped"  # not attempted: delivered, failed, not due, or claimed by another worker
    SUPERSEDED = "superseded"  # never sent: every booking in it has a newer delivered callback
    POSTPONED = "postponed"  # not sent yet: newer callbacks for all its bookings are still pending


# --- writing a callback -----------------------------------------------------------------------------------

_logged_disabled = False


def callback_body(
    *, callback_id: uuid.UUID, occurred_at: datetime, triggered_by: str, items: list, metadata: dict
) -> str:
    """The JSON text of a `predictions.updated` callback, as the seed's MLCallbackController reads it."""
    payload = {"affected_bookings": items, "metadata": metadata}
    return envelope_body(
        callback_id=callback_id, event=EVENT, occurred_at=occurred_at, triggered_by=triggered_by, payload=payload
    )


def envelope_body(
    *, callback_id: uuid.UUID, event: str, occurred_at: datetime, triggered_by: str, payload: dict
) -> str:
    """A callback's JSON text: its id, event, time and cause, then the event's own fields.

    Compact and ASCII-only, so the text, its UTF-8 bytes and what PHP's `getContent()` returns are the same.
    """
    head = {"id": str(callback_id), "event": event, "occurred_at": iso(occurred_at), "triggered_by": triggered_by}
    return json.dumps(head | payload, separators=(",", ":"), default=str)


def outbox_write(
    *, event: str, body: Callable[[uuid.UUID, datetime], str], triggered_by: str, items: Sequence[tuple[str, int]]
) -> CallbackOutbox | None:
    """Owe Laravel one callback: the row, its items (booking id, sequence: what orders it), and its delivery queued
    for after the commit. `body(callback_id, now)` writes its text. None when `ML_CALLBACK_URL` is empty
    (callbacks switched off). Call inside the transaction that stored what it reports."""
    global _logged_disabled
    endpoint = settings.ML_CALLBACK_URL
    if not endpoint:
        if not _logged_disabled:
            logger.debug("ML_CALLBACK_URL is empty: callbacks are not sent")
            _logged_disabled = True
        return None
    now, callback_id = timezone.now(), uuid.uuid4()
    row = CallbackOutbox.objects.create(
        id=callback_id,
        event=event,
        endpoint=endpoint,
        body=body(callback_id, now),
        triggered_by=triggered_by[:64],
        next_attempt_at=now,
        created_at=now,
    )
    insert(
        CallbackItem,
        [CallbackItem(outbox=row, booking_external_id=booking_id, sequence=sequence) for booking_id, sequence in items],
    )
    queue_on_commit(DELIVER_TASK, str(callback_id))
    return row


def callback_enqueue(*, predictions: Sequence[Prediction], triggered_by: str, metadata: dict) -> CallbackOutbox | None:
    """Owe Laravel a `predictions.updated` callback for `predictions`; deliver it after the commit.

    Call inside the transaction that stored the predictions: the row commits or rolls back with them.
    `triggered_by` is the event type (`booking.started`, ...) or another cause such as `retrain`;
    `metadata` is sent as is (add `vehicle_id`, `trigger_booking_id`, `event_id` where known;
    `model_version` is filled in when missing). Predictions without a booking id are left out. Does
    nothing when there is nothing to report or when `ML_CALLBACK_URL` is empty (callbacks switched off).
    """
    items = [callback_item(p) for p in predictions if p.booking_external_id]
    if not items:
        return None
    metadata = {**metadata}
    metadata.setdefault("model_version", next(p.model_version for p in predictions if p.booking_external_id))
    metadata.setdefault("affected_count", len(items))
    return outbox_write(
        event=EVENT,
        body=lambda callback_id, now: callback_body(
            callback_id=callback_id, occurred_at=now, triggered_by=triggered_by, items=items, metadata=metadata
        ),
        triggered_by=triggered_by,
        items=[(item["booking_id"], item["sequence"]) for item in items],
    )


def callback_redeliver(*, outbox_ids: Sequence[uuid.UUID | str], now: datetime | None = None) -> int:
    """Make failed or pending callbacks due now and queue a dispatch run (the admin's "Redeliver now").

    A failed callback gets one more attempt (it is failed again at once if that attempt fails); a
    pending one skips the rest of its wait and then follows its schedule. An open circuit of their
    endpoint is made ready for a probe now, so the oldest of them goes first as the probe and the
    rest follow once it succeeds, in creation order. Delivered callbacks are left alone. Returns how
    many were reset.
    """
    now = now or timezone.now()
    with transaction.atomic():
        rows = CallbackOutbox.objects.filter(
            pk__in=outbox_ids, status__in=[CallbackStatus.PENDING, CallbackStatus.FAILED]
        )
        endpoints = set(rows.values_list("endpoint", flat=True))
        reset = rows.update(status=CallbackStatus.PENDING, next_attempt_at=now)
        EndpointCircuit.objects.filter(endpoint__in=endpoints, state=CircuitState.OPEN).update(next_probe_at=now)
        if reset:
            queue_on_commit(DISPATCH_TASK)
    return reset


# --- signing ------------------------------------------------------------------------------------------


def signed_headers(*, secret: str, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """Every header of one attempt: the body's two signatures, its id and this attempt's timestamp."""
    return {
        "Content-Type": "application/json",
        "User-Agent": "batterypred-callbacks/1",
        "X-ML-Signature": sign_hex(secret, body),
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": standard_signature(secret, msg_id, timestamp, body),
    }


# --- retry policy -------------------------------------------------------------------------------------


def backoff_delay(attempt: int, *, rng: random.Random | None = None) -> timedelta | None:
    """How long to wait after failed attempt number `attempt` (1-based); None when it was the last."""
    if attempt >= MAX_ATTEMPTS:
        return None
    nominal = RETRY_SCHEDULE[attempt - 1]
    return nominal * (rng or random).uniform(1 - JITTER, 1 + JITTER)


def retry_after_delay(value: str | None, *, now: datetime) -> timedelta | None:
    """The server's `Retry-After` (seconds or an HTTP date) as a wait within [1 s, 24 h]; None if absent or bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        delay = timedelta(seconds=int(value))
    else:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None or timezone.is_naive(when):
            return None
        delay = when - now
    return min(max(delay, RETRY_AFTER_MIN), RETRY_AFTER_MAX)


# --- circuit breaker ----------------------------------------------------------------------------------


def _circuit_locked(endpoint: str) -> EndpointCircuit:
    """The endpoint's circuit row, locked until the transaction ends. Call inside `transaction.atomic()`."""
    locked = EndpointCircuit.objects.select_for_update()
    try:
        return locked.get(endpoint=endpoint)
    except EndpointCircuit.DoesNotExist:
        EndpointCircuit.objects.get_or_create(endpoint=endpoint)  # first callback to it (or created concurrently)
        return locked.get(endpoint=endpoint)


def _circuit_admits(circuit: EndpointCircuit, *, now: datetime, lease: timedelta) -> bool:
    """Whether an attempt may go to the endpoint now; an open circuit past its cool-down lets one probe through.

    The probe's own lease is the circuit's `next_probe_at`, so a probe whose worker died is replaced
    by another once the lease runs out.
    """
    if circuit.state == CircuitState.CLOSED:
        return True
    if circuit.next_probe_at and now < circuit.next_probe_at:
        return False
    circuit.state = CircuitState.HALF_OPEN
    circuit.next_probe_at = now + lease
    circuit.save(update_fields=["state", "next_probe_at", "updated_at"])
    logger.info("callback circuit for %s half-open: sending one probe", circuit.endpoint)
    return True


def _circuit_record(endpoint: str, *, ok: bool, now: datetime) -> None:
    circuit = _circuit_locked(endpoint)
    if ok:
        if circuit.state != CircuitState.CLOSED:
            logger.info("callback circuit for %s closed: the endpoint answered", endpoint)
        circuit.state, circuit.consecutive_failures = CircuitState.CLOSED, 0
        circuit.opened_at = circuit.next_probe_at = None
    else:
        circuit.consecutive_failures += 1
        if circuit.state == CircuitState.HALF_OPEN or circuit.consecutive_failures >= CIRCUIT_FAILURE_THRESHOLD:
            if circuit.state != CircuitState.OPEN:
                logger.warning(
                    "callback circuit for %s open after %d consecutive failures; next probe in %s",
                    endpoint,
                    circuit.consecutive_failures,
                    CIRCUIT_COOLDOWN,
                )
            circuit.state, circuit.opened_at = CircuitState.OPEN, now
            circuit.next_probe_at = now + CIRCUIT_COOLDOWN
    circuit.save()


# --- delivering ---------------------------------------------------------------------------------------


@dataclass
class _Claim:
    outbox: CallbackOutbox
    attempt: CallbackAttempt


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """One TLS context per process: building it (loading the CA bundle) costs more than a local request."""
    return httpx.create_ssl_context()


def _client() -> httpx.Client:
    return httpx.Client(timeout=settings.ML_CALLBACK_TIMEOUT_SECONDS, follow_redirects=False, verify=_tls_context())


def _lease() -> timedelta:
    return timedelta(seconds=settings.ML_CALLBACK_TIMEOUT_SECONDS) + LEASE_MARGIN


@dataclass(frozen=True)
class _Newer:
    """Newer callbacks that carry every booking of a row: all delivered, or some still pending (due at `due`)."""

    ids: list[str]
    delivered: bool
    due: datetime | None = None


def _newer_callbacks(row: CallbackOutbox) -> _Newer | None:
    """The newer callbacks that together carry every booking of `row`, or None when some booking has none.

    Newer means a higher `sequence` for the same booking in a callback that is delivered or pending: its
    numbers reach (or reached) Laravel after these would. When every booking's newer numbers were delivered,
    this row is stale for good. When some are only pending, it is stale only if they arrive; a failed newer
    callback does not count (it may never arrive). Rows written before items were recorded have none and are
    always sent.
    """
    mine = dict(row.items.values_list("booking_external_id", "sequence"))
    if not mine:
        return None
    candidates = (
        CallbackItem.objects.filter(
            booking_external_id__in=list(mine),
            sequence__gt=min(mine.values()),
            outbox__event=row.event,  # a readiness alert and a prediction update never stand in for each other
            outbox__status__in=[CallbackStatus.PENDING, CallbackStatus.DELIVERED],
        )
        .exclude(outbox_id=row.pk)
        .values_list("booking_external_id", "sequence", "outbox_id", "outbox__status", "outbox__next_attempt_at")
    )
    delivered: dict[str, set[str]] = {}
    pending: dict[str, dict[str, datetime]] = {}
    for booking_id, sequence, outbox_id, status, due in candidates:
        if sequence <= mine[booking_id]:
            continue
        if status == CallbackStatus.DELIVERED:
            delivered.setdefault(booking_id, set()).add(str(outbox_id))
        else:
            pending.setdefault(booking_id, {})[str(outbox_id)] = due
    if delivered.keys() == mine.keys():
        return _Newer(sorted(set().union(*delivered.values())), delivered=True)
    if delivered.keys() | pending.keys() != mine.keys():
        return None
    waiting = {i: due for b in mine.keys() - delivered.keys() for i, due in pending[b].items()}
    ids = set(waiting) | {i for b in delivered for i in delivered[b]}
    return _Newer(sorted(ids), delivered=False, due=max(waiting.values()))


def _ids_text(ids: list[str]) -> str:
    return ", ".join(ids[:5]) + (" ..." if len(ids) > 5 else "")


def _supersede_if_stale(row: CallbackOutbox, *, now: datetime) -> str | None:
    """For a locked pending row that newer callbacks cover: mark it superseded (all delivered) with a note in its
    attempt log, or hold it until they are settled (some pending). Returns the `Outcome`, or None to send it."""
    newer = _newer_callbacks(row)
    if newer is None:
        return None
    if not newer.delivered:
        row.next_attempt_at = max(newer.due or now, now) + POSTPONE_MARGIN
        row.last_error = f"waiting: newer callbacks for every booking in it are pending ({_ids_text(newer.ids)})"
        row.save(update_fields=["next_attempt_at", "last_error"])
        return Outcome.POSTPONED
    reason = f"not sent: every booking in it has a newer callback, delivered ({_ids_text(newer.ids)})"
    CallbackAttempt.objects.create(
        outbox=row,
        number=row.attempts + 1,
        started_at=now,
        webhook_timestamp=int(now.timestamp()),
        duration_ms=0,
        error=reason,
    )
    row.status, row.next_attempt_at, row.last_error = CallbackStatus.SUPERSEDED, None, reason
    row.save(update_fields=["status", "next_attempt_at", "last_error"])
    logger.info("callback %s superseded: %s", row.id, reason)
    return Outcome.SUPERSEDED


def _claim(outbox_id: uuid.UUID | str, *, now: datetime) -> _Claim | str:
    """Reserve the row for one attempt, or say why not (an `Outcome`). Runs in its own short transaction.

    A row whose every booking already has a newer delivered callback is not sent at all: it is marked
    superseded, with an entry in its attempt log that says by which callbacks. One whose newer callbacks are
    still pending waits for them (and is superseded once they are delivered, sent if one fails for good).
    """
    with transaction.atomic():
        row = CallbackOutbox.objects.select_for_update(skip_locked=True).filter(pk=outbox_id).first()
        if row is None or row.status != CallbackStatus.PENDING or row.next_attempt_at > now:
            return Outcome.SKIPPED
        stale = _supersede_if_stale(row, now=now)
        if stale is not None:
            return stale
        circuit = _circuit_locked(row.endpoint)
        if not _circuit_admits(circuit, now=now, lease=_lease()):
            return Outcome.CIRCUIT_OPEN
        row.attempts += 1
        row.next_attempt_at = now + _lease()
        row.save(update_fields=["attempts", "next_attempt_at"])
        attempt = CallbackAttempt.objects.create(
            outbox=row, number=row.attempts, started_at=now, webhook_timestamp=int(now.timestamp())
        )
    return _Claim(outbox=row, attempt=attempt)


def _post(client: httpx.Client, row: CallbackOutbox, attempt: CallbackAttempt) -> tuple[httpx.Response | None, str]:
    """Send the stored bytes once; return the response (any status) or the transport error's description."""
    body = row.body.encode()
    headers = signed_headers(
        secret=settings.ML_WEBHOOK_SECRET, msg_id=str(row.id), timestamp=attempt.webhook_timestamp, body=body
    )
    try:
        return client.post(row.endpoint, content=body, headers=headers), ""
    except httpx.HTTPError as error:
        return None, f"{type(error).__name__}: {error}"[:1000]


def _readiness_untold(row: CallbackOutbox) -> None:
    """A readiness callback that failed for good told Laravel nothing: what it was last told is put back, so the
    next prediction of the booking that still differs tells it again."""
    body = json.loads(row.body)
    booking_readiness_untold(booking_id=body["booking"]["booking_id"], told=body["at_risk"], was=body["was_at_risk"])


def _record(claim: _Claim, *, response: httpx.Response | None, error: str, now: datetime, duration_ms: int) -> str:
    """Complete the attempt's log entry and move the row on: delivered, due again later, or failed for good.

    The row is locked again and only rescheduled if no later attempt claimed it meanwhile (a request
    that outlived its lease); a 2xx marks it delivered whoever holds it, because it was.
    """
    attempt = claim.attempt
    ok = response is not None and response.is_success
    attempt.duration_ms = duration_ms
    if response is not None:
        attempt.status_code = response.status_code
        attempt.response_excerpt = response.text[:RESPONSE_EXCERPT_CHARS]
        if not ok:
            error = f"HTTP {response.status_code}"
    attempt.error = error
    with transaction.atomic():
        row = CallbackOutbox.objects.select_for_update().get(pk=claim.outbox.pk)
        if ok:
            outcome = Outcome.DELIVERED
            row.status, row.delivered_at, row.next_attempt_at, row.last_error = CallbackStatus.DELIVERED, now, None, ""
        elif row.status != CallbackStatus.PENDING or row.attempts != attempt.number:
            outcome = Outcome.SKIPPED  # another attempt owns the row now; it decides what comes next
        else:
            row.last_error = error
            delay = backoff_delay(attempt.number)
            if delay is None:
                outcome = Outcome.FAILED
                row.status, row.next_attempt_at = CallbackStatus.FAILED, None
                logger.error("callback %s failed after %d attempts: %s", row.id, attempt.number, error)
                if row.event == READINESS_EVENT:
                    _readiness_untold(row)
            else:
                outcome = Outcome.RETRY
                retry_after = response.headers.get("Retry-After") if response is not None else None
                row.next_attempt_at = now + (retry_after_delay(retry_after, now=now) or delay)
                attempt.next_attempt_at = row.next_attempt_at
                logger.warning(
                    "callback %s attempt %d failed (%s); next at %s",
                    row.id,
                    attempt.number,
                    error,
                    iso(row.next_attempt_at),
                )
        attempt.save()
        row.save(update_fields=["status", "delivered_at", "next_attempt_at", "last_error"])
        _circuit_record(row.endpoint, ok=ok, now=now)
    return outcome


def callback_deliver(
    *,
    outbox_id: uuid.UUID | str,
    now: datetime | None = None,
    client: httpx.Client | None = None,
) -> str:
    """Make one delivery attempt of a pending, due callback; return the `Outcome`.

    Skips (without error) a callback that is delivered, failed, not yet due, or being sent by another
    worker. While the endpoint's circuit is open nothing is sent and the row keeps waiting. `now` is
    the attempt's clock (tests move it forward); `client` lets a dispatch run reuse its connections.
    Call outside a transaction: the request must not run while database locks are held.
    """
    now = now or timezone.now()
    claim = _claim(outbox_id, now=now)
    if isinstance(claim, str):
        return claim
    started = time.monotonic()
    if client is None:
        with _client() as own:
            response, error = _post(own, claim.outbox, claim.attempt)
    else:
        response, error = _post(client, claim.outbox, claim.attempt)
    duration_ms = round((time.monotonic() - started) * 1000)
    return _record(claim, response=response, error=error, now=now, duration_ms=duration_ms)


@dataclass
class DispatchReport:
    """What one dispatch run did, by outcome; `more` says due rows were left for another run."""

    counts: dict[str, int]
    more: bool = False


def callbacks_dispatch_due(
    *, now: datetime | None = None, budget_seconds: float = DISPATCH_BUDGET_SECONDS, limit: int = DISPATCH_BATCH
) -> DispatchReport:
    """Deliver every pending callback that is due, oldest first: the periodic safety net and the backlog drain.

    A row whose queued task was lost (web or worker killed after the commit) is still pending, so this
    run sends it. An endpoint whose circuit is open is skipped for the rest of the run after one look;
    when a probe closes it, the rows behind it go out in creation order. The run stops starting new
    requests after `budget_seconds` (the worker's task timeout is 60 s) and reports `more`.
    """
    now = now or timezone.now()
    due = list(
        CallbackOutbox.objects.filter(status=CallbackStatus.PENDING, next_attempt_at__lte=now)
        .order_by("created_at", "id")
        .values_list("pk", "endpoint")[:limit]
    )
    counts: dict[str, int] = {}
    blocked: set[str] = set()
    started = time.monotonic()
    more = len(due) == limit
    with _client() as client:
        for pk, endpoint in due:
            if endpoint in blocked:
                continue
            if time.monotonic() - started > budget_seconds:
                more = True
                break
            outcome = callback_deliver(outbox_id=pk, now=now, client=client)
            counts[outcome] = counts.get(outcome, 0) + 1
            if outcome == Outcome.CIRCUIT_OPEN:
                blocked.add(endpoint)
    if counts:
        logger.info("callback dispatch: %s", ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    return DispatchReport(counts=counts, more=more and counts.get(Outcome.DELIVERED, 0) > 0)


def dispatch_again_soon() -> None:
    """Queue another dispatch run at once (a backlog larger than one run drains without waiting a minute)."""
    queue_on_commit(DISPATCH_TASK)
