from django.contrib import admin
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from learning.models import AccuracyMetric, BookingOutcome, DriftCheck, ModelVersion, UserPattern, VehiclePattern


@admin.register(BookingOutcome)
class BookingOutcomeAdmin(admin.ModelAdmin):
    list_display = [
        "booking",
        "vehicle",
        "user_id",
        "ends_at",
        "battery_at_start",
        "battery_at_end",
        "drain_rate_per_hour",
        "charging_at_end",
        "used_for_training",
    ]
    list_filter = ["charging_at_end", "used_for_training"]
    search_fields = ["booking__external_id", "vehicle__external_id", "user_id"]
    list_select_related = ["booking", "vehicle"]
    raw_id_fields = ["booking", "vehicle"]


@admin.register(VehiclePattern)
class VehiclePatternAdmin(admin.ModelAdmin):
    list_display = [
        "vehicle",
        "avg_drain_rate_per_hour",
        "avg_idle_drain_per_hour",
        "avg_charging_rate_per_hour",
        "charging_frequency",
        "total_bookings",
        "pattern_confidence",
        "updated_at",
    ]
    search_fields = ["vehicle__external_id"]
    list_select_related = ["vehicle"]
    raw_id_fields = ["vehicle"]


@admin.register(UserPattern)
class UserPatternAdmin(admin.ModelAdmin):
    list_display = [
        "user_id",
        "avg_return_battery",
        "charging_frequency",
        "avg_duration_hours",
        "avg_drain_rate_per_hour",
        "total_bookings",
    ]
    search_fields = ["user_id"]


@admin.register(AccuracyMetric)
class AccuracyMetricAdmin(admin.ModelAdmin):
    list_display = [
        "date",
        "model_version",
        "prediction_method",
        "count",
        "mae",
        "rmse",
        "bias",
        "share_within_10",
        "coverage",
    ]
    list_filter = ["model_version", "prediction_method"]
    date_hierarchy = "date"


# --- the model registry: read-only, since rows are written by training and promotion only -------------------


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = ["version", "status", "source", "trained_at", "promoted_at", "window_start", "window_end"]
    list_filter = ["status", "source"]
    search_fields = ["version"]
    readonly_fields = [f.name for f in ModelVersion._meta.fields] + ["compare"]

    @admin.display(description="Compare")
    def compare(self, obj: ModelVersion) -> str:
        return format_html('<a href="{}">all models side by side</a>', reverse("dashboard:models"))

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
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
