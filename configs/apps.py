from django.apps import AppConfig


class ConfigsConfig(AppConfig):
    name = "configs"
    verbose_name = "Computation configs"

    def ready(self) -> None:
        from configs import (
            checks,  # noqa: F401  (registers the calendar settings check)
            receivers,  # noqa: F401  (connects the change hooks)
        )
