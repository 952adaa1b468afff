from django.apps import AppConfig
from django.db.models.signals import post_migrate

from common.schedules import schedules_on_post_migrate


class CallbacksConfig(AppConfig):
    name = "callbacks"
    verbose_name = "Callbacks to Laravel (outbox)"

    def ready(self) -> None:
        from callbacks import receivers  # noqa: F401  (connects the receivers)

        # Periodic tasks are declared in code (callbacks/schedules.py) and written after every migrate.
        post_migrate.connect(schedules_on_post_migrate, sender=self, dispatch_uid="callbacks.schedules_declare")
