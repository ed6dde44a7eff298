import gc
import logging
import signal
from typing import Any

from django.core.management.base import BaseCommand

from signals.bridge import BridgeSettings, StreamBridge
from signals.redis_client import get_redis

log = logging.getLogger(__name__)


class Command(BaseCommand):
    help = "Read tick streams through the consumer group and send batches to Celery (runs until SIGTERM)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--consumer", default=None, help="consumer name in the group (default: host-pid)")

    def handle(self, *args: Any, **options: Any) -> None:
        self.stopping = False
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        bridge = StreamBridge(get_redis(), BridgeSettings.from_django(), consumer=options["consumer"])
        gc.freeze()  # start-up objects live for ever; keep them out of the collector's generations
        log.info("stream bridge starting", extra={"consumer": bridge.consumer, "patterns": bridge.config.patterns})
        bridge.run(lambda: self.stopping)
        log.info("stream bridge stopped", extra={"consumer": bridge.consumer})

    def _on_signal(self, signum: int, frame: Any) -> None:
        # Only set a flag: the loop finishes (and acknowledges) the batch in hand, then exits.
        self.stopping = True
