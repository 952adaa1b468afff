from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html

from bookings.models import BatteryReading, Booking, InboundEvent, Vehicle


@admin.register(Vehicle)
class VehicleAdmin(admin.ModelAdmin):
    list_display = ["external_id", "created_at", "timeline"]
    search_fields = ["external_id"]
    readonly_fields = ["timeline"]

    @admin.display(description="Timeline")
    def timeline(self, obj: Vehicle) -> str:
        """The car's battery timeline page (readings, predictions against actual levels, bookings)."""
        if obj.pk is None:
            return "-"
        return format_html(
            '<a href="{}">battery timeline</a>', reverse("dashboard:car-timeline", args=[obj.external_id])
        )


@admin.register(Booking)
class BookingAdmin(admin.ModelAdmin):
    list_display = [
        "external_id",
        "vehicle",
        "user_id",
        "status",
        "scheduled_start",
        "scheduled_end",
        "battery_at_start",
        "battery_at_end",
    ]
    list_filter = ["status"]
    # Exact matches use the indexes (a "contains" search read every booking); newest first.
    search_fields = ["external_id__exact", "user_id__exact"]
    search_help_text = "Exact booking id or renter id."
    ordering = ["-scheduled_start", "-id"]
    list_select_related = ["vehicle"]
    raw_id_fields = ["vehicle"]
    show_full_result_count = False


@admin.register(BatteryReading)
class BatteryReadingAdmin(admin.ModelAdmin):
    list_display = ["vehicle", "level", "recorded_at", "source", "charging", "booking"]
    list_filter = ["source"]
    search_fields = ["vehicle__external_id"]
    list_select_related = ["vehicle", "booking"]
    raw_id_fields = ["vehicle", "booking"]


@admin.register(InboundEvent)
class InboundEventAdmin(admin.ModelAdmin):
    list_display = ["event_type", "booking_external_id", "vehicle", "applied", "duplicates", "received_at"]
    list_filter = ["event_type", "applied"]
    search_fields = ["booking_external_id__exact", "idempotency_key__exact"]
    search_help_text = "Exact booking id or idempotency key."
    list_select_related = ["vehicle"]
    show_full_result_count = False
    readonly_fields = [f.name for f in InboundEvent._meta.fields]
