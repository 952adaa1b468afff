"""Predict (single, batch) and a booking's current prediction in one viewset; car timeline, model info, registry."""

from django.db import transaction
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework.viewsets import ViewSet

from bookings.models import Vehicle
from common.api.schema import ERROR_RESPONSE_409
from learning.selectors import model_versions_list
from predictions import serializers as s
from predictions.bodies import prediction_body
from predictions.readiness import Need
from predictions.reports import model_info, vehicle_timeline
from predictions.selectors import prediction_current
from predictions.services import prediction_predict


def _path_id(name: str, value: str) -> str:
    """An id from the URL path, refused with a 400 naming it when no id could hold it.

    `%00` in the path arrives as a NUL character, which Postgres refuses in a query parameter: the lookup failed
    with a 500 (and Laravel retries a 5xx). Ids in bodies are refused by the JSON parser for the same reason.
    """
    if "\x00" in value:
        raise ValidationError({name: ["Must not contain NUL (%00) characters."]})
    return value


def _predict(data: dict, trigger: str):
    return prediction_predict(
        vehicle_id=data["vehicle_id"],
        booking_start_time=data["booking_start_time"],
        booking_id=data.get("booking_id") or "",
        user_id=data.get("user_id") or "",
        current_battery_level=data.get("current_battery_level"),
        current_timestamp=data.get("current_timestamp"),
        intermediate_bookings=data.get("intermediate_bookings"),
        trigger=trigger,
        need=Need(required_battery=data.get("required_battery"), planned_distance_km=data.get("planned_distance_km")),
    )


# No docstrings on the viewset or its actions: drf-spectacular would publish them as operation descriptions.
class PredictionViewSet(ViewSet):
    @extend_schema(
        request=s.PredictRequestSerializer,
        responses={200: s.PredictResponseSerializer, 409: ERROR_RESPONSE_409},
        tags=["predictions"],
        operation_id="predict",
        summary="Battery at booking start: historical mode, or real-time with the current level.",
    )
    @action(detail=False, methods=["post"], url_path="predict", url_name="predict")
    def predict(self, request: Request) -> Response:
        serializer = s.PredictRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        prediction = _predict(serializer.validated_data, "predict")
        return Response(prediction_body(prediction, vehicle_external_id=serializer.validated_data["vehicle_id"]))

    @extend_schema(
        request=s.PredictBatchRequestSerializer,
        responses={200: s.PredictBatchResponseSerializer, 409: ERROR_RESPONSE_409},
        tags=["predictions"],
        operation_id="predict_batch",
        summary="Many predictions in one call (all or none are stored).",
    )
    @action(detail=False, methods=["post"], url_path="predict/batch", url_name="predict-batch")
    def batch(self, request: Request) -> Response:
        serializer = s.PredictBatchRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        items = serializer.validated_data["bookings"]
        # Cars are locked in one global order so that two concurrent batches cannot deadlock.
        order = sorted(range(len(items)), key=lambda i: (items[i]["vehicle_id"], i))
        with transaction.atomic():
            predictions = {index: _predict(items[index], "batch") for index in order}
        bodies = [
            prediction_body(predictions[i], vehicle_external_id=item["vehicle_id"]) for i, item in enumerate(items)
        ]
        return Response({"count": len(bodies), "predictions": bodies})

    @extend_schema(
        responses={200: s.StoredPredictionSerializer},
        tags=["predictions"],
        operation_id="prediction_current",
        summary="The booking's current prediction.",
    )
    @action(detail=False, methods=["get"], url_path="predictions/<str:booking_id>", url_name="prediction")
    def retrieve(self, request: Request, booking_id: str) -> Response:
        prediction = prediction_current(booking_id=_path_id("booking_id", booking_id))
        if prediction is None:
            raise NotFound(f"No prediction for booking {booking_id}.")
        body = prediction_body(prediction)
        body.update(
            {
                "predicted_at": body["timestamp"],
                "trigger": prediction.trigger,
                "status": prediction.status,
                "actual_battery": prediction.actual_battery,
                "prediction_error": prediction.prediction_error,
            }
        )
        return Response(body)


class VehicleTimelineView(APIView):
    @extend_schema(
        parameters=[
            OpenApiParameter("days", int, required=False, description="History window in days (1-3650, default 30).")
        ],
        responses={200: s.TimelineResponseSerializer},
        tags=["vehicles"],
        operation_id="vehicle_timeline",
        summary="The car's readings, bookings and predictions.",
    )
    def get(self, request: Request, vehicle_id: str) -> Response:
        query = s.TimelineQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        vehicle = get_object_or_404(Vehicle, external_id=_path_id("vehicle_id", vehicle_id).strip())
        return Response(vehicle_timeline(vehicle=vehicle, days=query.validated_data["days"]))


class ModelInfoView(APIView):
    @extend_schema(
        responses={200: s.ModelInfoSerializer},
        tags=["models"],
        operation_id="model_info",
        summary="The serving model and its figures.",
    )
    def get(self, request: Request) -> Response:
        return Response(model_info())


class ModelListView(APIView):
    @extend_schema(
        parameters=[s.ModelListQuerySerializer],
        responses={200: s.ModelListSerializer},
        tags=["models"],
        operation_id="model_list",
        summary="Every registered model, newest first: status, training window, metrics, calibration.",
    )
    def get(self, request: Request) -> Response:
        query = s.ModelListQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        return Response(model_versions_list(limit=query.validated_data["limit"]))
