from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from bookings.models import EventType
from learning.models import ModelVersion
from predictions.models import IntervalCalibration, Prediction, ReadinessCalibration
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


@admin.register(ReadinessCalibration)
class ReadinessCalibrationAdmin(admin.ModelAdmin):
    """Where actual levels fell in their predicted distributions, per lead time (docs/readiness.md): read-only.

    A staff member may delete a row to start that lead time over from the raw probability.
    """

    list_display = ["key", "bookings", "updated_at"]
    readonly_fields = [f.name for f in ReadinessCalibration._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False
