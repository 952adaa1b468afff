from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView
from rest_framework.permissions import AllowAny

from batterypred.health import HealthDetailView, HealthView
from batterypred.metrics import metrics_view
from common.api.routers import ActionRouter
from common.api.schema import CachedSchemaGenerator
from events.views import BookingEventViewSet
from predictions import views as predictions

docs = {"permission_classes": [AllowAny], "throttle_classes": []}

# The predict and event endpoints: `/api/v1/predict`, `/predict/batch`, `/predictions/<booking_id>` and
# `/events/booking-created|started|ended|modified|cancelled`, each named by its action (common/api/routers.py).
router = ActionRouter()
router.register("api/v1", predictions.PredictionViewSet, basename="predictions")
router.register("api/v1", BookingEventViewSet, basename="events")

urlpatterns = [
    path("admin/dashboard/", include("dashboard.urls")),
    path("admin/", admin.site.urls),
    path("health", HealthView.as_view(), name="health"),
    path("metrics", metrics_view, name="metrics"),  # Prometheus; not an API operation, so not in the schema
    path("api/v1/health", HealthDetailView.as_view(), name="health-detail"),
    path("api/v1/vehicle/<str:vehicle_id>/timeline", predictions.VehicleTimelineView.as_view(), name="timeline"),
    path("api/v1/model/info", predictions.ModelInfoView.as_view(), name="model-info"),
    path("api/v1/models", predictions.ModelListView.as_view(), name="models"),
    *router.urls,
    path("api/schema/", SpectacularAPIView.as_view(generator_class=CachedSchemaGenerator, **docs), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema", **docs), name="swagger-ui"),
    path("api/redoc/", SpectacularRedocView.as_view(url_name="schema", **docs), name="redoc"),
]
