from django.apps import AppConfig


class LearningConfig(AppConfig):
    name = "learning"
    verbose_name = "Learning (outcomes, patterns, accuracy)"

    def ready(self) -> None:
        from learning import receivers  # noqa: F401  (connects the receivers)
