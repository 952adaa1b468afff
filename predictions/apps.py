from django.apps import AppConfig
from django.db.models.signals import post_migrate


class PredictionsConfig(AppConfig):
    name = "predictions"
    verbose_name = "Predictions"

    def ready(self) -> None:
        from predictions import champion_receivers, receivers  # noqa: F401  (connects the receivers)
        from predictions.schedules import schedules_on_post_migrate

        # Periodic tasks are declared in code (predictions/schedules.py) and written after every migrate.
        post_migrate.connect(schedules_on_post_migrate, sender=self, dispatch_uid="predictions.schedules_declare")
