from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView
from rest_framework.permissions import AllowAny

from batterypred.health import HealthDetailView, HealthView
from batterypred.metrics import metrics_view
from bookings import views as events
from common.api.schema import CachedSchemaGenerator
from predictions import views as predictions

docs = {"permission_classes": [AllowAny], "throttle_classes": []}

urlpatterns = [
    path("admin/dashboard/", include("dashboard.urls")),
    path("admin/", admin.site.urls),
    path("health", HealthView.as_view(), name="health"),
    path("metrics", metrics_view, name="metrics"),  # Prometheus; not an API operation, so not in the schema
    path("api/v1/health", HealthDetailView.as_view(), name="health-detail"),
    path("api/v1/predict", predictions.PredictView.as_view(), name="predict"),
    path("api/v1/predict/batch", predictions.PredictBatchView.as_view(), name="predict-batch"),
    path("api/v1/predictions/<str:booking_id>", predictions.PredictionDetailView.as_view(), name="prediction"),
    path("api/v1/vehicle/<str:vehicle_id>/timeline", predictions.VehicleTimelineView.as_view(), name="timeline"),
    path("api/v1/model/info", predictions.ModelInfoView.as_view(), name="model-info"),
    path("api/v1/models", predictions.ModelListView.as_view(), name="models"),
    path("api/v1/events/booking-created", events.BookingCreatedView.as_view(), name="booking-created"),
    path("api/v1/events/booking-started", events.BookingStartedView.as_view(), name="booking-started"),
    path("api/v1/events/booking-ended", events.BookingEndedView.as_view(), name="booking-ended"),
    path("api/v1/events/booking-modified", events.BookingModifiedView.as_view(), name="booking-modified"),
    path("api/v1/events/booking-cancelled", events.BookingCancelledView.as_view(), name="booking-cancelled"),
    path("api/schema/", SpectacularAPIView.as_view(generator_class=CachedSchemaGenerator, **docs), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema", **docs), name="swagger-ui"),
    path("api/redoc/", SpectacularRedocView.as_view(url_name="schema", **docs), name="redoc"),
]
