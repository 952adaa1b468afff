from django.contrib import admin

from predictions.models import Prediction


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
    list_filter = ["prediction_method", "status", "is_current", "model_version", "trigger"]
    search_fields = ["prediction_id", "booking_external_id", "vehicle__external_id"]
    list_select_related = ["vehicle"]
    raw_id_fields = ["vehicle", "booking", "trigger_event"]
