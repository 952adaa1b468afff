"""Bodies of the five booking webhooks, as the seed shows them: requests validated strictly, responses documented.

The responses are rendered by `events/responses.py`; an `affected_bookings` item is a prediction's shape
(`predictions.bodies.affected_item`, documented by `predictions.serializers.AffectedBookingSerializer`).
"""

from rest_framework import serializers

from common.api.fields import (
    AwareDateTimeField,
    BatteryField,
    ExternalIdField,
    ObservedAtField,
    StrictFloatField,
)
from predictions.serializers import (
    READINESS_HELP,
    AffectedBookingSerializer,
    ConfidenceIntervalSerializer,
    ReadinessNeedSerializer,
    ReadinessSerializer,
)

MAX_FUTURE_BOOKINGS = 500


def _end_after_start(attrs: dict, start: str, end: str) -> None:
    if attrs.get(start) and attrs.get(end) and attrs[end] <= attrs[start]:
        raise serializers.ValidationError({end: [f"Must be after {start}."]})


class FutureBookingSerializer(serializers.Serializer):
    booking_id = ExternalIdField()
    user_id = ExternalIdField(required=False, allow_null=True)
    starts_at = AwareDateTimeField()
    ends_at = AwareDateTimeField()

    def validate(self, attrs):
        _end_after_start(attrs, "starts_at", "ends_at")
        return attrs


class EventSerializer(serializers.Serializer):
    booking_id = ExternalIdField()
    vehicle_id = ExternalIdField()
    zone = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=64,
        help_text="Where the car stands now (any label the platform uses). When a booking becomes at risk, swaps "
        "are suggested among the cars of its car's zone only; blank clears it.",
    )
    future_bookings = FutureBookingSerializer(many=True, required=False, max_length=MAX_FUTURE_BOOKINGS)

    def validate_future_bookings(self, items: list[dict]) -> list[dict]:
        """One entry per booking: two schedules for one booking cannot both be true, so neither is guessed."""
        seen: dict[str, int] = {}
        for index, item in enumerate(items):
            first = seen.setdefault(item["booking_id"], index)
            if first != index:
                raise serializers.ValidationError(
                    {index: {"booking_id": [f"Listed twice: also future_bookings[{first}]."]}}
                )
        return items


class BookingCreatedSerializer(EventSerializer, ReadinessNeedSerializer):
    user_id = ExternalIdField(required=False, allow_null=True)
    starts_at = AwareDateTimeField()
    ends_at = AwareDateTimeField()
    current_battery_level = BatteryField(required=False, allow_null=True)
    current_timestamp = ObservedAtField(required=False, allow_null=True)

    def validate(self, attrs):
        attrs = super().validate(attrs)
        _end_after_start(attrs, "starts_at", "ends_at")
        return attrs


class BookingStartedSerializer(EventSerializer):
    user_id = ExternalIdField(required=False, allow_null=True)
    actual_battery_at_start = BatteryField()
    actual_started_at = ObservedAtField()


class BookingEndedSerializer(EventSerializer):
    user_id = ExternalIdField(required=False, allow_null=True)
    starts_at = ObservedAtField(help_text="When the car was actually picked up.")
    ends_at = ObservedAtField(help_text="When the car was actually returned.")
    battery_at_start = BatteryField()
    battery_at_end = BatteryField()
    mileage_at_start = StrictFloatField(required=False, allow_null=True, min_value=0)
    mileage_at_end = StrictFloatField(required=False, allow_null=True, min_value=0)
    charging_at_end = serializers.BooleanField(required=False, default=False)

    def validate(self, attrs):
        _end_after_start(attrs, "starts_at", "ends_at")
        start, end = attrs.get("mileage_at_start"), attrs.get("mileage_at_end")
        if start is not None and end is not None and end < start:
            raise serializers.ValidationError({"mileage_at_end": ["Must not be below mileage_at_start."]})
        return attrs


class BookingModifiedSerializer(EventSerializer, ReadinessNeedSerializer):
    user_id = ExternalIdField(required=False, allow_null=True)
    new_starts_at = AwareDateTimeField()
    new_ends_at = AwareDateTimeField()
    modification_type = serializers.CharField(required=False, allow_blank=True, max_length=64)

    def validate(self, attrs):
        attrs = super().validate(attrs)
        _end_after_start(attrs, "new_starts_at", "new_ends_at")
        return attrs


class BookingCancelledSerializer(EventSerializer):
    pass


# --- responses (documentation and shape) ---


class EventResponseSerializer(serializers.Serializer):
    status = serializers.ChoiceField(
        choices=["success", "ignored"], help_text="ignored: the booking could not move; see notes."
    )
    booking_id = serializers.CharField()
    booking_status = serializers.CharField(allow_null=True)
    notes = serializers.ListField(child=serializers.CharField())
    affected_bookings = AffectedBookingSerializer(many=True)


class BookingCreatedResponseSerializer(EventResponseSerializer):
    prediction_id = serializers.CharField(allow_null=True)
    predicted_battery = serializers.FloatField(allow_null=True)
    confidence_interval = ConfidenceIntervalSerializer(allow_null=True)
    prediction_method = serializers.CharField(allow_null=True)
    starts_at = serializers.DateTimeField(allow_null=True)
    readiness = ReadinessSerializer(allow_null=True, help_text=READINESS_HELP)


class BookingStartedResponseSerializer(EventResponseSerializer):
    prediction_error = serializers.FloatField(allow_null=True, help_text="actual - predicted, in points")
    patterns_updated = serializers.BooleanField()


class BookingEndedResponseSerializer(EventResponseSerializer):
    outcome_recorded = serializers.BooleanField()
    drain_rate_updated = serializers.BooleanField()
    new_avg_drain_rate = serializers.FloatField(allow_null=True, help_text="% per hour while driven")
    pattern_confidence = serializers.ChoiceField(choices=["low", "medium", "high"])
    total_bookings = serializers.IntegerField()
    queued_for_retraining = serializers.BooleanField()
    prediction_error = serializers.FloatField(allow_null=True)


class BookingModifiedResponseSerializer(EventResponseSerializer):
    prediction_updated = serializers.BooleanField()


class BookingCancelledResponseSerializer(EventResponseSerializer):
    prediction_cancelled = serializers.BooleanField()
