"""Mounted at /admin/dashboard/ (before the admin's own URLs); every page behind the admin's staff login."""

from django.contrib import admin
from django.urls import path

from dashboard import views

app_name = "dashboard"

staff = admin.site.admin_view

urlpatterns = [
    path("accuracy/", staff(views.accuracy), name="accuracy"),
    # <path:...>: Laravel's car ids are any string, "/" included.
    path("cars/<path:vehicle_id>/timeline/", staff(views.car_timeline_page), name="car-timeline"),
    path("models/", staff(views.models_page), name="models"),
    path("models/retrain/", staff(views.models_retrain), name="models-retrain"),
    path("deliveries/", staff(views.deliveries), name="deliveries"),
    path("deliveries/redeliver/", staff(views.deliveries_redeliver), name="deliveries-redeliver"),
    path("operations/", staff(views.operations), name="operations"),
]
