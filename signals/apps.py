from django.apps import AppConfig


class SignalsConfig(AppConfig):
    name = "signals"
    verbose_name = "Signals"

    def ready(self) -> None:
        from signals import checks, schema  # noqa: F401  (register the system checks and the OpenAPI auth scheme)
