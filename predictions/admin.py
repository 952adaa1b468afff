from django.contrib import admin, messages
from django.contrib.auth import get_permission_codename
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest

from bookings.models import EventType
from predictions.drift_models import DriftCheck
from predictions.models import IntervalCalibration, Prediction
from predictions.outbox import callback_redeliver
from predictions.outbox_models import CallbackAttempt, CallbackOutbox, CallbackStatus, EndpointCircuit
from predictions.registry_admin import ModelVersionAdmin  # noqa: F401  (registers the model registry)
from predictions.registry_models import ModelVersion
from predictions.services import MODEL_VERSION


class ModelVersionFilter(admin.SimpleListFilter):
    """Versions from the registry (and the pattern cascade's), not a DISTINCT over every prediction."""

    title = "model version"
    parameter_name = "model_version"

    def lookups(self, request: HttpRequest, model_admin) -> list[tuple[str, str]]:
        versions = list(ModelVersion.objects.order_by("-trained_at").values_list("version", flat=True)[:50])
        return [(v, v) for v in [*versions, MODEL_VERSION]]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Prediction]) -> QuerySet[Prediction]:
        return queryset.filter(model_version=self.value()) if self.value() else queryset


class TriggerFilter(admin.SimpleListFilter):
    title = "trigger"
    parameter_name = "trigger"

    def lookups(self, request: HttpRequest, model_admin) -> list[tuple[str, str]]:
        return [(t, t) for t in ["predict", "batch", *EventType.values, "model_promoted"]]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Prediction]) -> QuerySet[Prediction]:
        return queryset.filter(trigger=self.value()) if self.value() else queryset


@admin.register(Prediction)
class PredictionAdmin(admin.ModelAdmin):
    list_display = [
        "prediction_id",
        "booking_external_id",
        "vehicle",
        "predicted_battery",
        "confidence_lower",
        "confidence_upper",
        "prediction_method",
        "is_current",
        "status",
        "actual_battery",
        "prediction_error",
        "predicted_at",
    ]
    list_filter = ["prediction_method", "status", "is_current", ModelVersionFilter, TriggerFilter]
    # Exact matches use the indexes; a "contains" search read all of a year's million rows (bench/pages.py).
    search_fields = ["booking_external_id__exact", "prediction_id__exact"]
    search_help_text = "Exact booking id or prediction id."
    list_select_related = ["vehicle"]
    raw_id_fields = ["vehicle", "booking", "trigger_event"]
    show_full_result_count = False


# --- callback outbox (issue 4) -----------------------------------------------------------------------------


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

    Redelivering needs `predictions.redeliver_callbackoutbox`. A callback still owed (pending, or failed and so
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


# --- drift checks (issue 5) ---------------------------------------------------------------------------------


@admin.register(DriftCheck)
class DriftCheckAdmin(admin.ModelAdmin):
    """The weekly drift checks: read-only, since `learning.drift.model_drift_check` writes them."""

    list_display = ["checked_at", "model_version", "status", "max_psi", "worst_feature", "outcomes", "window_end"]
    list_filter = ["status"]
    list_select_related = ["model_version"]
    search_fields = ["model_version__version"]
    date_hierarchy = "checked_at"
    readonly_fields = [f.name for f in DriftCheck._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


@admin.register(IntervalCalibration)
class IntervalCalibrationAdmin(admin.ModelAdmin):
    """The online interval margins per kind of prediction: read-only, since scoring moves them.

    A staff member may delete a row to start that kind over from the predictor's own interval.
    """

    list_display = ["key", "margin_lower", "margin_upper", "bookings", "predictions", "below", "above", "updated_at"]
    search_fields = ["key"]
    readonly_fields = [f.name for f in IntervalCalibration._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False
