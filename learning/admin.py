from django.contrib import admin

from learning.models import AccuracyMetric, BookingOutcome, UserPattern, VehiclePattern


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
