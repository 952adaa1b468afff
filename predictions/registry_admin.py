"""The model registry in the admin: read-only, since rows are written by training and promotion only."""

from django.contrib import admin
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from predictions.registry_models import ModelVersion


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
