from django.apps import AppConfig
from django.db.models.signals import post_migrate

from common.schedules import schedules_on_post_migrate


class BookingsConfig(AppConfig):
    name = "bookings"
    verbose_name = "Bookings (what Laravel tells us)"

    def ready(self) -> None:
        # Periodic tasks are declared in code (bookings/schedules.py) and written after every migrate.
        post_migrate.connect(schedules_on_post_migrate, sender=self, dispatch_uid="bookings.schedules_declare")
