from django.apps import AppConfig


class SignalsConfig(AppConfig):
    name = "signals"
    verbose_name = "Signals"

    def ready(self) -> None:
        # Imported once the apps are ready: these modules need the settings and the installed apps.
        from django.conf import settings

        from feed import redis_client  # (the Django-free client learns the settings' URL here)
        from webapi import checks, schema  # noqa: F401  (register the system checks and the OpenAPI auth scheme)

        redis_client.set_default_url(lambda: settings.REDIS_URL)
        redis_client.set_cluster(settings.REDIS_CLUSTER)
