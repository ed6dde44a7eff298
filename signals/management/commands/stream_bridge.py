import gc
import logging
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand

from feed import probes
from feed.redis_client import get_redis
from feed.streams import stop_on_signals
from signals.ingest.bridge import BridgeSettings, StreamBridge

log = logging.getLogger(__name__)


class Command(BaseCommand):
    help = "Read tick streams through the consumer group and send batches to Celery (runs until SIGTERM)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--consumer", default=None, help="consumer name in the group (default: host-pid)")

    def handle(self, *args: Any, **options: Any) -> None:
        # /metrics, /healthz, /readyz on SIGNAL_METRICS_PORT: every turn of the loop checks the stop flag and beats
        heartbeat = probes.start(settings.SIGNAL_METRICS_PORT, settings.SIGNAL_METRICS_HOST,
                                 settings.SIGNAL_HEARTBEAT_MAX_AGE_S)
        should_stop = heartbeat.beating(stop_on_signals())
        bridge = StreamBridge(get_redis(), BridgeSettings.from_django(), consumer=options["consumer"])
        gc.freeze()  # start-up objects live for ever; keep them out of the collector's generations
        log.info("stream bridge starting", extra={"consumer": bridge.consumer, "patterns": bridge.config.patterns})
        bridge.run(should_stop)
        log.info("stream bridge stopped", extra={"consumer": bridge.consumer})
