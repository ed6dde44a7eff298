import logging
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand

from configs.stream import ConfigStreamConsumer, ConfigStreamSettings
from feed import probes
from feed.redis_client import get_redis
from feed.streams import stop_on_signals

log = logging.getLogger(__name__)


class Command(BaseCommand):
    help = ("Apply config changes from the signal_config_updates stream (consumer group; invalid entries to "
            "signal_config_updates:dead). Runs until SIGTERM, which finishes the entry in hand.")

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--consumer", default=None, help="consumer name in the group (default: host-pid)")

    def handle(self, *args: Any, **options: Any) -> None:
        # /metrics, /healthz, /readyz on SIGNAL_METRICS_PORT: every turn of the loop checks the stop flag and beats
        heartbeat = probes.start(settings.SIGNAL_METRICS_PORT, settings.SIGNAL_METRICS_HOST,
                                 settings.SIGNAL_HEARTBEAT_MAX_AGE_S)
        should_stop = heartbeat.beating(stop_on_signals())
        consumer = ConfigStreamConsumer(get_redis(), ConfigStreamSettings.from_django(), consumer=options["consumer"])
        log.info("config stream consumer starting", extra={"consumer": consumer.consumer,
                                                           "stream": consumer.config.stream})
        consumer.run(should_stop)
        log.info("config stream consumer stopped", extra={"consumer": consumer.consumer})
