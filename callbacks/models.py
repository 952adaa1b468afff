"""The callback outbox: every `predictions.updated` callback owed to Laravel, its attempts, and each endpoint's circuit.

A row is written in the same transaction as the predictions it reports, so a callback exists if and
only if its predictions were committed. The worker delivers it later (see `callbacks.services`).
The tables keep the names they had while these models lived in `predictions` (issue 14 moved them).
"""

from __future__ import annotations

import uuid

from django.db import models
from django.db.models import Q


class CallbackStatus(models.TextChoices):
    PENDING = "pending", "pending"
    DELIVERED = "delivered", "delivered"
    FAILED = "failed", "failed (retries exhausted)"
    # Never sent: every booking in it already has a newer callback, pending or delivered (see CallbackItem).
    SUPERSEDED = "superseded", "superseded (newer numbers owed or sent)"


class CallbackOutbox(models.Model):
    """One callback: the exact bytes to send (signed as they are) and where its delivery stands.

    `id` is the callback's id in the body and the `webhook-id` header, the same on every attempt, so the
    receiver can drop duplicates. While `status` is pending the row is due at `next_attempt_at`; a worker
    that claims it moves `next_attempt_at` forward by a lease first, so a worker killed mid-request leaves
    a row that is simply due again once the lease runs out.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    event = models.CharField(max_length=64, default="predictions.updated")
    endpoint = models.URLField(max_length=500, help_text="Where it goes: ML_CALLBACK_URL when it was written.")
    body = models.TextField(help_text="The JSON body exactly as sent and signed (UTF-8).")
    triggered_by = models.CharField(max_length=64, blank=True, default="")
    status = models.CharField(max_length=16, choices=CallbackStatus.choices, default=CallbackStatus.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True, help_text="Due from then while pending.")
    created_at = models.DateTimeField(db_index=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")

    class Meta:
        db_table = "predictions_callbackoutbox"
        ordering = ["-created_at"]
        verbose_name = "callback"
        # Sending a callback again is a write to Laravel: its own permission, apart from viewing the outbox.
        permissions = [("redeliver_callbackoutbox", "Can redeliver a callback now")]
        indexes = [
            models.Index(fields=["status", "next_attempt_at", "created_at"], name="callback_due"),
            models.Index(fields=["status", "delivered_at"], name="callback_last_delivered"),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(status__in=CallbackStatus.values), name="callback_status_valid"),
            models.CheckConstraint(
                condition=~Q(status=CallbackStatus.PENDING) | Q(next_attempt_at__isnull=False),
                name="callback_pending_has_next_attempt",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.event} {self.id}"


class CallbackAttempt(models.Model):
    """One HTTP request of one callback. Written when the request starts; completed when it ends.

    An attempt with no `duration_ms` never got an answer recorded: its worker stopped mid-request.
    """

    outbox = models.ForeignKey(CallbackOutbox, on_delete=models.CASCADE, related_name="attempt_log")
    number = models.PositiveIntegerField(help_text="1 for the first attempt of the callback.")
    started_at = models.DateTimeField()
    webhook_timestamp = models.BigIntegerField(help_text="The webhook-timestamp header sent (Unix seconds).")
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    response_excerpt = models.TextField(blank=True, default="", help_text="The first 500 characters of the answer.")
    error = models.TextField(blank=True, default="")
    next_attempt_at = models.DateTimeField(null=True, blank=True, help_text="When the next attempt was scheduled.")

    class Meta:
        db_table = "predictions_callbackattempt"
        ordering = ["outbox", "number"]
        constraints = [models.UniqueConstraint(fields=["outbox", "number"], name="one_attempt_per_number")]

    def __str__(self) -> str:
        return f"attempt {self.number} of {self.outbox_id}"

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


class CallbackItem(models.Model):
    """One booking's prediction inside a callback: what lets the outbox see that a newer callback supersedes it.

    `sequence` is the prediction's id, which only grows for a booking (its predictions are issued one after
    another under the car's lock), and is also sent in the body so that Laravel applies only newer numbers.
    """

    outbox = models.ForeignKey(CallbackOutbox, on_delete=models.CASCADE, related_name="items")
    booking_external_id = models.CharField(max_length=64)
    sequence = models.BigIntegerField()

    class Meta:
        db_table = "predictions_callbackitem"
        verbose_name = "callback item"
        indexes = [models.Index(fields=["booking_external_id", "sequence"], name="callback_item_booking_seq")]

    def __str__(self) -> str:
        return f"{self.booking_external_id} #{self.sequence} in {self.outbox_id}"


class CircuitState(models.TextChoices):
    CLOSED = "closed", "closed (delivering)"
    OPEN = "open", "open (waiting for the cool-down)"
    HALF_OPEN = "half_open", "half-open (one probe in flight)"


class EndpointCircuit(models.Model):
    """The circuit breaker of one callback endpoint.

    After a run of consecutive failures the circuit opens: no callback to the endpoint is attempted (rows
    wait, their retry schedule untouched) until `next_probe_at`, when one delivery goes as a probe. Its
    success closes the circuit and the backlog drains; its failure opens it for another cool-down.
    """

    endpoint = models.URLField(max_length=500, unique=True)
    state = models.CharField(max_length=16, choices=CircuitState.choices, default=CircuitState.CLOSED)
    consecutive_failures = models.PositiveIntegerField(default=0)
    opened_at = models.DateTimeField(null=True, blank=True)
    next_probe_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "predictions_endpointcircuit"
        ordering = ["endpoint"]
        verbose_name = "callback endpoint circuit"
        constraints = [
            models.CheckConstraint(condition=Q(state__in=CircuitState.values), name="circuit_state_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.endpoint} ({self.state})"
