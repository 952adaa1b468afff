from django.apps import AppConfig
from django.db.models.signals import post_migrate

from common.schedules import schedules_on_post_migrate


class LearningConfig(AppConfig):
    name = "learning"
    verbose_name = "Learning (outcomes, patterns, accuracy)"

    def ready(self) -> None:
        from learning import receivers  # noqa: F401  (connects the receivers)

        # Periodic tasks are declared in code (learning/schedules.py) and written after every migrate.
        post_migrate.connect(schedules_on_post_migrate, sender=self, dispatch_uid="learning.schedules_declare")
