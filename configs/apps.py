from django.apps import AppConfig


class ConfigsConfig(AppConfig):
    name = "configs"
    verbose_name = "Computation configs"

    def ready(self) -> None:
        from configs import checks, receivers  # noqa: F401  (the calendar settings check; the change hooks)
