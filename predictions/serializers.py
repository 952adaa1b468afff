"""Bodies of the predict endpoints (the seed's historical and real-time modes) and the read views."""

from rest_framework import serializers

from common.api.fields import AwareDateTimeField, BatteryField, ExternalIdField, ObservedAtField, StrictFloatField
from learning.models import ModelStatus
from learning.selectors import MODELS_LIMIT_DEFAULT, MODELS_LIMIT_MAX
from predictions.models import PredictionMethod
from predictions.shadow import CANDIDATES

MAX_INTERMEDIATE_BOOKINGS = 200
MAX_BATCH = 500
MAX_PLANNED_DISTANCE_KM = 10_000.0  # far beyond any car's range: a larger figure is a typo


class ConfidenceIntervalSerializer(serializers.Serializer):
    lower = serializers.FloatField()
    upper = serializers.FloatField()
    confidence_level = serializers.FloatField()


class ReadinessSerializer(serializers.Serializer):
    required_level = serializers.FloatField(
        help_text="The level the booking needs at pick-up: required_battery, the level planned_distance_km takes at "
        "the car's and renter's learned drain per km, or READINESS_MIN_LEVEL."
    )
    probability_ready = serializers.FloatField(
        help_text="P(level at pick-up >= required_level), from the same distribution as the 95 % interval."
    )
    at_risk = serializers.BooleanField(help_text="probability_ready is below READINESS_RISK_THRESHOLD.")
    charge_needed = serializers.FloatField(
        help_text="Points to add to the predicted level so that probability_ready reaches the threshold; 0 when "
        "not at risk."
    )
    plug_in_by = serializers.DateTimeField(
        allow_null=True,
        help_text="The latest time to plug the car in to gain charge_needed by the pick-up, at its learned charging "
        "rate with a margin for a charger that delivers less; null when no charge is needed, the level cannot be "
        "reached, or that time has passed.",
    )


READINESS_HELP = "Will the car have what the booking needs (docs/readiness.md); null for predictions stored before it."


# What a booking needs at pick-up: a level, or a distance; neither means the fleet's READINESS_MIN_LEVEL. A comment,
# not a docstring: drf-spectacular would publish it as the description of every request body that mixes it in.
class ReadinessNeedSerializer(serializers.Serializer):
    required_battery = BatteryField(
        required=False, allow_null=True, help_text="Level (0-100) the booking needs at pick-up."
    )
    planned_distance_km = StrictFloatField(
        required=False,
        allow_null=True,
        min_value=0.0,
        max_value=MAX_PLANNED_DISTANCE_KM,
        help_text="Distance the renter plans to drive; turned into a level with the learned drain per km.",
    )

    def validate(self, attrs):
        attrs = super().validate(attrs)
        if attrs.get("required_battery") is not None and attrs.get("planned_distance_km") is not None:
            message = "Send either required_battery or planned_distance_km, not both."
            raise serializers.ValidationError({"required_battery": [message], "planned_distance_km": [message]})
        return attrs


class AffectedBookingSerializer(serializers.Serializer):
    booking_id = serializers.CharField()
    predicted_battery = serializers.FloatField()
    confidence_interval = ConfidenceIntervalSerializer()
    starts_at = serializers.DateTimeField()
    prediction_method = serializers.CharField()
    prediction_id = serializers.CharField()
    model_version = serializers.CharField()
    predicted_at = serializers.DateTimeField()
    sequence = serializers.IntegerField(
        help_text="Grows with each new prediction of this booking: apply an item only if newer than the one held."
    )
    readiness = ReadinessSerializer(allow_null=True, help_text=READINESS_HELP)


class IntermediateBookingSerializer(serializers.Serializer):
    starts_at = AwareDateTimeField()
    ends_at = AwareDateTimeField()
    user_id = ExternalIdField(required=False, allow_null=True)
    booking_id = ExternalIdField(required=False, allow_null=True)

    def validate(self, attrs):
        if attrs["ends_at"] <= attrs["starts_at"]:
            raise serializers.ValidationError({"ends_at": ["Must be after starts_at."]})
        return attrs


class PredictRequestSerializer(ReadinessNeedSerializer):
    vehicle_id = ExternalIdField()
    user_id = ExternalIdField(required=False, allow_null=True)
    booking_start_time = AwareDateTimeField()
    booking_id = ExternalIdField(required=False, allow_null=True)
    current_battery_level = BatteryField(
        required=False, allow_null=True, help_text="Real-time mode: the level now. Omit for historical mode."
    )
    current_timestamp = ObservedAtField(required=False, allow_null=True)
    intermediate_bookings = IntermediateBookingSerializer(
        many=True, required=False, max_length=MAX_INTERMEDIATE_BOOKINGS
    )

    def validate(self, attrs):
        attrs = super().validate(attrs)
        level, now = attrs.get("current_battery_level"), attrs.get("current_timestamp")
        if now is not None and level is None:
            raise serializers.ValidationError(
                {"current_battery_level": ["Required when current_timestamp is given (real-time mode)."]}
            )
        if attrs.get("intermediate_bookings") and level is None:
            raise serializers.ValidationError(
                {"current_battery_level": ["Required with intermediate_bookings (real-time mode)."]}
            )
        for index, item in enumerate(attrs.get("intermediate_bookings") or []):
            if item["ends_at"] > attrs["booking_start_time"]:
                raise serializers.ValidationError(
                    {"intermediate_bookings": {index: {"ends_at": ["Must not be after booking_start_time."]}}}
                )
        return attrs


class PredictBatchRequestSerializer(serializers.Serializer):
    bookings = PredictRequestSerializer(many=True, min_length=1, max_length=MAX_BATCH)


class CascadeStepSerializer(serializers.Serializer):
    type = serializers.ChoiceField(choices=["idle", "booking"])
    duration_hours = serializers.FloatField()
    battery_change = serializers.FloatField()
    battery_after = serializers.FloatField()
    starts_at = serializers.DateTimeField()
    ends_at = serializers.DateTimeField()
    charging_probability = serializers.FloatField(required=False, help_text="idle steps: chance it was plugged in")
    booking_id = serializers.CharField(required=False)


class PredictResponseSerializer(serializers.Serializer):
    booking_id = serializers.CharField(allow_null=True)
    vehicle_id = serializers.CharField()
    predicted_battery_percentage = serializers.FloatField()
    confidence_interval = ConfidenceIntervalSerializer()
    prediction_method = serializers.ChoiceField(
        choices=PredictionMethod.values,
        help_text="The seed's modes; prefixed pattern_ when no trained model serves (the pattern cascade alone).",
    )
    cascade_steps = CascadeStepSerializer(many=True)
    timestamp = serializers.DateTimeField(
        help_text="When the prediction was made. A historical question asked again while the car has not changed is "
        "answered with the prediction stored for it, its id and this time (at most PREDICTION_REUSE_SECONDS ago)."
    )
    prediction_id = serializers.CharField()
    model_version = serializers.CharField()
    booking_start_time = serializers.DateTimeField(
        help_text="The moment predicted for: the requested one, or current_timestamp when that pick-up has passed."
    )
    notes = serializers.ListField(
        child=serializers.CharField(), help_text="How the request was read, e.g. a late pick-up predicted from now."
    )
    served_by = serializers.CharField(
        allow_blank=True,
        help_text="The candidate that shadow scoring chose for this kind of prediction: model, pattern, "
        "persistence or median (docs/models.md); empty for predictions stored before shadow scoring.",
    )
    readiness = ReadinessSerializer(allow_null=True, help_text=READINESS_HELP)


class PredictBatchResponseSerializer(serializers.Serializer):
    count = serializers.IntegerField()
    predictions = PredictResponseSerializer(many=True)


class StoredPredictionSerializer(PredictResponseSerializer):
    predicted_at = serializers.DateTimeField()
    trigger = serializers.CharField()
    status = serializers.CharField()
    actual_battery = serializers.FloatField(allow_null=True)
    prediction_error = serializers.FloatField(allow_null=True)


class TimelineBookingSerializer(serializers.Serializer):
    booking_id = serializers.CharField()
    user_id = serializers.CharField()
    status = serializers.CharField()
    starts_at = serializers.DateTimeField()
    ends_at = serializers.DateTimeField(allow_null=True)
    actual_started_at = serializers.DateTimeField(allow_null=True)
    actual_ended_at = serializers.DateTimeField(allow_null=True)
    battery_at_start = serializers.FloatField(allow_null=True)
    battery_at_end = serializers.FloatField(allow_null=True)
    charging_at_end = serializers.BooleanField(allow_null=True)
    prediction = AffectedBookingSerializer(allow_null=True)
    prediction_error = serializers.FloatField(allow_null=True)


class TimelineReadingSerializer(serializers.Serializer):
    level = serializers.FloatField()
    recorded_at = serializers.DateTimeField()
    source = serializers.CharField()
    charging = serializers.BooleanField(allow_null=True)
    booking_id = serializers.CharField(allow_null=True)


class TimelineResponseSerializer(serializers.Serializer):
    vehicle_id = serializers.CharField()
    pattern = serializers.DictField(allow_null=True)
    last_reading = TimelineReadingSerializer(allow_null=True)
    readings = TimelineReadingSerializer(many=True)
    bookings = TimelineBookingSerializer(many=True)


class TimelineQuerySerializer(serializers.Serializer):
    days = serializers.IntegerField(
        required=False,
        min_value=1,
        max_value=3650,
        default=30,
        help_text="How far back to show finished bookings and readings.",
    )


# Its docstring is the schema's description, kept byte for byte (the API contract): the body is built by
# `learning.selectors.model_version_body` since the registry moved to learning (issue 14).
class ModelVersionSerializer(serializers.Serializer):
    """A registered model (`predictions.registry_selectors.model_version_body`)."""

    version = serializers.CharField()
    kind = serializers.CharField()
    # A CharField, not a ChoiceField: a second enum named `status` would rename the schema's existing StatusEnum.
    status = serializers.CharField(help_text=f"One of {', '.join(ModelStatus.values)}; exactly one model is champion.")
    source = serializers.CharField(help_text="synthetic:<seed> (cold start) or outcomes (retrained).")
    trained_at = serializers.DateTimeField()
    promoted_at = serializers.DateTimeField(allow_null=True)
    window_start = serializers.DateTimeField(allow_null=True, help_text="First pick-up of the outcomes trained on.")
    window_end = serializers.DateTimeField(allow_null=True, help_text="Last return of the outcomes trained on.")
    training_rows = serializers.DictField(help_text="Rows per segment model (gap, trip).")
    features = serializers.DictField()
    hyperparameters = serializers.DictField()
    holdout_metrics = serializers.DictField(help_text="MAE, bias, within_10 and coverage_95 on held-out outcomes.")
    champion_metrics = serializers.DictField(help_text="The then champion's figures on the same holdout.")
    calibration = serializers.DictField(help_text="Interval scale per segment kind.")
    training_seconds = serializers.FloatField()
    artifact_sha256 = serializers.CharField()
    notes = serializers.CharField(allow_blank=True, help_text="Why it was (not) promoted.")


class ModelListSerializer(serializers.Serializer):
    models = ModelVersionSerializer(many=True, help_text="Newest first.")
    total = serializers.IntegerField(help_text="Models registered (the list shows at most `limit`).")
    count = serializers.IntegerField(help_text="Models in this list.")


class ModelListQuerySerializer(serializers.Serializer):
    limit = serializers.IntegerField(
        required=False,
        min_value=1,
        max_value=MODELS_LIMIT_MAX,
        default=MODELS_LIMIT_DEFAULT,
        help_text="How many of the newest models to list.",
    )


class CandidateScoreSerializer(serializers.Serializer):
    mae = serializers.FloatField(help_text="exponentially weighted mean absolute error, points")
    pooled_mae = serializers.FloatField(
        help_text="the MAE that decides what serves: this kind's record pooled with its lead time's and the fleet's "
        "(docs/models.md), points"
    )
    bookings = serializers.IntegerField(help_text="scored bookings of this kind")


class ShadowKindSerializer(serializers.Serializer):
    kind = serializers.CharField()
    serving = serializers.ChoiceField(choices=CANDIDATES)
    candidates = serializers.DictField(child=CandidateScoreSerializer())


class ModelInfoSerializer(serializers.Serializer):
    model_name = serializers.CharField()
    model_version = serializers.CharField()
    model_type = serializers.CharField()
    status = serializers.CharField()
    description = serializers.CharField()
    serving = serializers.ChoiceField(
        choices=["model", "pattern_cascade"],
        help_text="What answers predictions: the champion model, or the pattern cascade (no champion, or its "
        "artifact cannot be loaded).",
    )
    champion = ModelVersionSerializer(allow_null=True, help_text="The registry's champion; null when none.")
    shadow_scoring = ShadowKindSerializer(
        many=True,
        help_text="Per kind of prediction (lead time | own or cascade | the car's last known state, `-low` after "
        "parked or unknown when it was last seen below 25 %; then each lead time and `*` for all): every candidate's "
        "weighted MAE on this fleet's pick-ups, and which one serves it.",
    )
    confidence_level = serializers.FloatField()
    fleet_prior = serializers.DictField()
    statistics = serializers.DictField()
    accuracy = serializers.DictField()
