"""The worker-side view of enabled configs: loaded from PostgreSQL once, reloaded when the version in Redis moves.

Workers check the version once per batch (one Redis GET); a change made anywhere reaches every worker on its next
batch.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from configs.frequency import FrequencyError, parse_frequency
from configs.models import SignalConfig
from feed import keys
from feed.instruments import key_matches
from feed.redis_client import get_redis

VERSION_KEY = keys.configs_version()


@dataclass(frozen=True)
class ActiveConfig:
    id: int
    name: str
    pattern: str
    frequency: str
    document: dict[str, Any]


def bump_version() -> None:
    get_redis().incr(VERSION_KEY)


class ConfigRegistry:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._version: bytes | None = None
        self._configs: list[ActiveConfig] = []
        self._match_cache: dict[tuple[str, str], list[ActiveConfig]] = {}

    def refresh(self, version: bytes | None = None) -> None:
        """Reload if the Redis version moved (or on first use). Pass a version already read to save a round trip."""
        if version is None:
            version = get_redis().get(VERSION_KEY) or b"0"
        if version == self._version:
            return

        rows = SignalConfig.objects.filter(enabled=True).values_list("id", "name", "instrument_key", "frequency", "config")
        configs = [ActiveConfig(pk, name, pattern, freq, doc) for pk, name, pattern, freq, doc in rows]
        with self._lock:
            self._configs = configs
            self._match_cache = {}
            self._version = version

    def forget(self) -> None:
        """Drop the loaded configs, so the next `refresh` reloads them whatever the version (the version key itself
        may be gone, as after a Redis flush)."""
        with self._lock:
            self._version = None
            self._configs = []
            self._match_cache = {}

    def matching(self, instrument_key: str, frequency: str) -> list[ActiveConfig]:
        cache_key = (instrument_key, frequency)
        found = self._match_cache.get(cache_key)
        if found is None:
            found = [c for c in self._configs if c.frequency == frequency and key_matches(c.pattern, instrument_key)]
            self._match_cache[cache_key] = found
        return found

    def all(self) -> list[ActiveConfig]:
        return list(self._configs)

    @property
    def version(self) -> bytes | None:
        """The Redis version the loaded configs belong to (None before the first refresh)."""
        return self._version

    def by_schedule(self, schedule_key: str) -> list[ActiveConfig]:
        """Enabled time-driven configs whose frequency shares the beat entry ``schedule_key``."""
        found = []
        for config in self._configs:
            try:
                frequency = parse_frequency(config.frequency)
            except FrequencyError:
                continue
            if frequency.is_time_driven and frequency.schedule_key == schedule_key:
                found.append(config)
        return found


registry = ConfigRegistry()
