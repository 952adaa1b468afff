from django.apps import AppConfig


class CallbacksConfig(AppConfig):
    name = "callbacks"
    verbose_name = "Callbacks to Laravel (outbox)"

    def ready(self) -> None:
        from callbacks import receivers  # noqa: F401  (connects the receivers)
