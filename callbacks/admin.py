"""The callback outbox in the admin: staff watch the callbacks owed to Laravel, their attempts and circuits, and
redeliver (with the `callbacks.redeliver_callbackoutbox` permission)."""

from django.contrib import admin, messages
from django.contrib.auth import get_permission_codename
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest

from callbacks.models import CallbackAttempt, CallbackOutbox, CallbackStatus, EndpointCircuit
from callbacks.services import callback_redeliver


class CallbackAttemptInline(admin.TabularInline):
    """The attempt log: what was sent when, how long it took and what Laravel answered."""

    model = CallbackAttempt
    extra = 0
    can_delete = False
    ordering = ["number"]
    fields = [
        "number",
        "started_at",
        "webhook_timestamp",
        "duration_ms",
        "status_code",
        "error",
        "response_excerpt",
        "next_attempt_at",
    ]
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


@admin.register(CallbackOutbox)
class CallbackOutboxAdmin(admin.ModelAdmin):
    """Callbacks owed to Laravel. Rows are written by the event services; staff only watch and redeliver.

    Redelivering needs `callbacks.redeliver_callbackoutbox`. A callback still owed (pending, or failed and so
    redeliverable) is never deleted here, one by one or in bulk: it is Laravel's only copy of those predictions.
    Delivered rows may be deleted by staff with the delete permission.
    """

    list_display = ["id", "triggered_by", "status", "attempts", "next_attempt_at", "created_at", "delivered_at"]
    list_filter = ["status"]
    search_fields = ["id", "body"]
    search_help_text = "Callback id, or any text of the body (a booking id): a full scan, give it a moment."
    ordering = ["-created_at"]
    show_full_result_count = False
    inlines = [CallbackAttemptInline]
    actions = ["redeliver_now"]
    readonly_fields = [
        "id",
        "event",
        "endpoint",
        "triggered_by",
        "status",
        "attempts",
        "next_attempt_at",
        "created_at",
        "delivered_at",
        "last_error",
        "body",
    ]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False  # the body is what was signed and must stay as it is; the action below is the only write

    def has_delete_permission(self, request: HttpRequest, obj: CallbackOutbox | None = None) -> bool:
        if obj is not None and obj.status != CallbackStatus.DELIVERED:
            return False
        return super().has_delete_permission(request, obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[CallbackOutbox]) -> None:
        """The bulk delete: its confirmation already refuses owed rows (`has_delete_permission`); never delete one."""
        if queryset.exclude(status=CallbackStatus.DELIVERED).exists():
            raise PermissionDenied("Callbacks still owed to Laravel (pending or failed) cannot be deleted.")
        super().delete_queryset(request, queryset)

    def has_redeliver_permission(self, request: HttpRequest) -> bool:
        codename = get_permission_codename("redeliver", self.opts)
        return request.user.has_perm(f"{self.opts.app_label}.{codename}")

    @admin.action(description="Redeliver now (failed or pending callbacks)", permissions=["redeliver"])
    def redeliver_now(self, request: HttpRequest, queryset: QuerySet[CallbackOutbox]) -> None:
        selected = list(queryset.values_list("pk", flat=True))
        reset = callback_redeliver(outbox_ids=selected)
        self.message_user(request, f"{reset} callback(s) queued for delivery now.", messages.SUCCESS)
        if reset < len(selected):
            skipped = len(selected) - reset
            self.message_user(request, f"{skipped} already delivered callback(s) left alone.", messages.WARNING)


@admin.register(EndpointCircuit)
class EndpointCircuitAdmin(admin.ModelAdmin):
    """Each callback endpoint's circuit breaker: open means deliveries wait for the next probe."""

    list_display = ["endpoint", "state", "consecutive_failures", "opened_at", "next_probe_at", "updated_at"]
    readonly_fields = ["endpoint", "state", "consecutive_failures", "opened_at", "next_probe_at", "updated_at"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False
