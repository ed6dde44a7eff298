import logging
import signal
from typing import Any

from django.core.management.base import BaseCommand

from configs.stream import ConfigStreamConsumer, ConfigStreamSettings
from signals.redis_client import get_redis

log = logging.getLogger(__name__)


class Command(BaseCommand):
    help = ("Apply config changes from the signal_config_updates stream (consumer group; invalid entries to "
            "signal_config_updates:dead). Runs until SIGTERM, which finishes the entry in hand.")

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--consumer", default=None, help="consumer name in the group (default: host-pid)")

    def handle(self, *args: Any, **options: Any) -> None:
        self.stopping = False
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        consumer = ConfigStreamConsumer(get_redis(), ConfigStreamSettings.from_django(), consumer=options["consumer"])
        log.info("config stream consumer starting", extra={"consumer": consumer.consumer,
                                                           "stream": consumer.config.stream})
        consumer.run(lambda: self.stopping)
        log.info("config stream consumer stopped", extra={"consumer": consumer.consumer})

    def _on_signal(self, signum: int, frame: Any) -> None:
        # Only set a flag: the loop finishes (commits and acknowledges) the entry in hand, then exits.
        self.stopping = True
