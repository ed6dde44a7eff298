from django.apps import AppConfig


class ConfigsConfig(AppConfig):
    name = "configs"
    verbose_name = "Computation configs"

    def ready(self) -> None:
        from configs import receivers  # noqa: F401  (connects the change hooks)
