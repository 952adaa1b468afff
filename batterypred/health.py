"""Liveness and readiness.

`GET /health` (liveness) answers without an API key so load balancers can probe it: the process runs and reaches
its database. `GET /api/v1/health` (detailed) needs the API key, because it shows internals (model versions,
callback backlog, queue sizes): database, model, task queue, callback outbox and callback settings, each with its
status and the figures it was judged by (see `batterypred.health_checks` and docs/operations.md).
"""

from django.db import DatabaseError, connection
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from batterypred import health_checks


class HealthView(APIView):
    permission_classes = [AllowAny]
    throttle_classes: list = []

    @extend_schema(
        auth=[],
        tags=["health"],
        operation_id="health",
        summary="Liveness and database reachability.",
        responses={
            200: inline_serializer("Health", {"status": serializers.CharField(), "database": serializers.CharField()}),
            503: inline_serializer(
                "HealthDown", {"status": serializers.CharField(), "database": serializers.CharField()}
            ),
        },
    )
    def get(self, request: Request) -> Response:
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
            return Response({"status": "healthy", "database": "ok"})
        except Exception as exc:  # noqa: BLE001  (any database failure means unhealthy)
            return Response({"status": "unhealthy", "database": str(exc)[:200]}, status=503)


class _CheckSerializer(serializers.Serializer):
    status = serializers.ChoiceField(
        choices=health_checks.CHECK_STATUSES,
        help_text="healthy, degraded, unhealthy, or unknown (not checked because the database is down).",
    )
    message = serializers.CharField(required=False, help_text="Why the check is not healthy and what to do.")


class DatabaseCheckSerializer(_CheckSerializer):
    vendor = serializers.CharField(help_text="postgresql or sqlite.")
    latency_ms = serializers.FloatField(required=False, help_text="How long SELECT 1 took.")

    class Meta:
        ref_name = "HealthDatabaseCheck"


class ModelCheckSerializer(_CheckSerializer):
    serving = serializers.ChoiceField(choices=["model", "pattern_cascade"], required=False)
    version = serializers.CharField(required=False, help_text="The version recorded on new predictions.")
    kind = serializers.CharField(required=False, help_text="gap-trip-lgbm, or pattern-cascade.")
    champion = serializers.CharField(
        required=False, allow_null=True, help_text="The registry's champion, whether or not it loaded; null: none."
    )

    class Meta:
        ref_name = "HealthModelCheck"


class TaskQueueCheckSerializer(_CheckSerializer):
    broker = serializers.ChoiceField(choices=["orm", "redis"], required=False)
    schedule = serializers.CharField(required=False, help_text="The every-minute schedule the judgement rests on.")
    next_run = serializers.DateTimeField(required=False, allow_null=True)
    lag_seconds = serializers.FloatField(
        required=False, allow_null=True, help_text="How far next_run lies in the past (0 when in the future)."
    )
    last_success_at = serializers.DateTimeField(required=False, allow_null=True)
    last_run_success = serializers.BooleanField(
        required=False, allow_null=True, help_text="Whether the latest finished run succeeded; null: not known."
    )
    queued_tasks = serializers.IntegerField(required=False, help_text="Tasks waiting for the default cluster.")
    training_queued_tasks = serializers.IntegerField(
        required=False, help_text="Tasks waiting for the training cluster."
    )

    class Meta:
        ref_name = "HealthTaskQueueCheck"


class OutboxCheckSerializer(_CheckSerializer):
    enabled = serializers.BooleanField(required=False, help_text="Whether ML_CALLBACK_URL is set.")
    pending = serializers.IntegerField(required=False)
    failed = serializers.IntegerField(required=False, help_text="Callbacks that exhausted their retries.")
    oldest_pending_age_seconds = serializers.FloatField(required=False, allow_null=True)
    last_failure_at = serializers.DateTimeField(
        required=False, allow_null=True, help_text="The last attempt of the most recent failed callback."
    )
    open_circuits = serializers.IntegerField(required=False, help_text="Endpoints whose circuit is not closed.")

    class Meta:
        ref_name = "HealthOutboxCheck"


class CallbacksCheckSerializer(_CheckSerializer):
    enabled = serializers.BooleanField(help_text="Whether re-predictions are sent to Laravel, signed.")
    disabled = serializers.BooleanField(help_text="ML_CALLBACKS_DISABLED: this deployment sends no callbacks.")
    url_configured = serializers.BooleanField(help_text="Whether ML_CALLBACK_URL is set.")
    secret_configured = serializers.BooleanField(help_text="Whether ML_WEBHOOK_SECRET is set.")

    class Meta:
        ref_name = "HealthCallbacksCheck"


class HealthChecksSerializer(serializers.Serializer):
    database = DatabaseCheckSerializer()
    model = ModelCheckSerializer()
    task_queue = TaskQueueCheckSerializer()
    outbox = OutboxCheckSerializer()
    callbacks = CallbacksCheckSerializer(
        help_text="Callbacks configured: degraded when ML_CALLBACK_URL or ML_WEBHOOK_SECRET is empty."
    )

    class Meta:
        ref_name = "HealthChecks"


class HealthDetailSerializer(serializers.Serializer):
    status = serializers.ChoiceField(
        choices=health_checks.OVERALL_STATUSES,
        help_text="unhealthy only when the database is unreachable (HTTP 503); degraded (HTTP 200): serving, "
        "but a check needs an operator.",
    )
    service = serializers.CharField()
    version = serializers.CharField(help_text="The API version.")
    timestamp = serializers.DateTimeField()
    checks = HealthChecksSerializer()

    class Meta:
        ref_name = "HealthDetail"


class HealthDetailView(APIView):
    """Readiness in detail, for monitoring. Needs the API key: it reveals model versions and backlogs."""

    @extend_schema(
        tags=["health"],
        operation_id="health_detail",
        summary="Database, serving model, task queue, callback outbox and callback settings, each with its status.",
        responses={
            200: OpenApiResponse(HealthDetailSerializer, description="healthy or degraded: the service answers."),
            503: OpenApiResponse(HealthDetailSerializer, description="unhealthy: the database cannot be reached."),
        },
    )
    def get(self, request: Request) -> Response:
        report = health_checks.health_report()
        return Response(report, status=503 if report["status"] == health_checks.UNHEALTHY else 200)

    def handle_exception(self, exc: Exception) -> Response:
        """The database failing while the API key is verified is an outage to report (503), not a 500."""
        if isinstance(exc, DatabaseError):
            return Response(health_checks.health_report_database_down(exc), status=503)
        return super().handle_exception(exc)
