"""What a stream bridge is set to do (`signals.ingest.bridge`), from the Django settings or given by a test."""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings


@dataclass
class BridgeSettings:
    group: str
    patterns: list[str]
    dead_letter_stream: str
    batch_size: int
    block_ms: int
    reclaim_idle_ms: int
    max_deliveries: int
    discovery_interval_s: float
    reclaim_interval_s: float
    default_queue: str
    queue_routes: dict[str, str]
    max_wait_ms: int = 50
    underlying_wait_ms: int = 0  # see signals/ingest/waits.py
    staleness_s: float = 2.0
    vix_key: str = "NSE@INDVIX@index"
    index_symbols: frozenset[str] = frozenset()
    turn_grace_s: float = 2.0  # see signals/ingest/turns.py
    stream_lease_s: float = 0.0  # see signals/ingest/stream_leases.py; 0: every bridge reads every stream

    @classmethod
    def from_django(cls) -> BridgeSettings:
        return cls(
            group=settings.SIGNAL_CONSUMER_GROUP, patterns=settings.SIGNAL_STREAM_PATTERNS,
            dead_letter_stream=settings.SIGNAL_DEAD_LETTER_STREAM, batch_size=settings.SIGNAL_BATCH_SIZE, block_ms=settings.SIGNAL_BLOCK_MS,
            reclaim_idle_ms=settings.SIGNAL_RECLAIM_IDLE_MS, max_deliveries=settings.SIGNAL_MAX_DELIVERIES,
            discovery_interval_s=settings.SIGNAL_DISCOVERY_INTERVAL_S, reclaim_interval_s=settings.SIGNAL_RECLAIM_INTERVAL_S,
            default_queue=settings.SIGNAL_DEFAULT_QUEUE, queue_routes=settings.SIGNAL_QUEUE_ROUTES,
            max_wait_ms=settings.SIGNAL_BATCH_MAX_WAIT_MS, underlying_wait_ms=settings.SIGNAL_UNDERLYING_WAIT_MS,
            staleness_s=settings.SIGNAL_UNDERLYING_STALENESS_S, vix_key=settings.SIGNAL_VIX_KEY,
            index_symbols=frozenset(settings.SIGNAL_INDEX_SYMBOLS), turn_grace_s=settings.SIGNAL_TURN_GRACE_S,
            stream_lease_s=settings.SIGNAL_BRIDGE_LEASE_S,
        )

    def queue_for(self, symbol_key: str) -> str:
        return self.queue_routes.get(symbol_key, self.default_queue)
