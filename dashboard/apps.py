from django.apps import AppConfig


class DashboardConfig(AppConfig):
    """Staff pages: accuracy, car timelines, models, deliveries and operations alerts.

    They live under `/admin/dashboard/`, behind the admin's staff login, and link from the admin index.
    """

    default_auto_field = "django.db.models.BigAutoField"
    name = "dashboard"
    verbose_name = "Staff dashboards"

    def ready(self) -> None:
        from django.contrib import admin

        # The admin index lists the dashboards above the model tables (templates/admin/batterypred_index.html).
        admin.site.index_template = "admin/batterypred_index.html"
