"""Exactly one celery-beat: `SingleBeatScheduler` is django-celery-beat's `DatabaseScheduler` behind a Redis lock.

The beat holding the lock (``SIGNAL_BEAT_LOCK_KEY``, a random token with a TTL of ``SIGNAL_BEAT_LOCK_TTL_S``)
renews it on every scheduler tick (at most ``CELERY_BEAT_MAX_LOOP_INTERVAL`` seconds apart) and releases it on
shutdown. A second beat started anywhere cannot take the lock: it stays idle in standby, sends nothing, and tries
again every few seconds, so it takes over within one TTL if the active beat dies (or, with
``SIGNAL_BEAT_STANDBY=false``, it exits at start). An active beat that fails to renew (Redis unreachable, lock
expired and taken) stops sending at once and goes back to standby.

Run it with ``celery -A signal_project beat -S signals.schedule.beat:SingleBeatScheduler`` (the default scheduler in the
settings); the Procfile and docker-compose do.
"""

from __future__ import annotations

import datetime
import logging
import os
import socket
import uuid
from typing import Any

import redis
from django.conf import settings
from django_celery_beat.schedulers import DatabaseScheduler

from configs.scheduling import sync_schedules
from feed import probes
from feed.redis_client import get_redis
from signals.monitoring import metrics
from signals.schedule import token_locks

log = logging.getLogger(__name__)


class BeatLock:
    """A Redis lock owned by one token: acquire (SET NX PX), renew and release only while we own it."""

    def __init__(self, client: redis.Redis, key: str, ttl_s: float, identity: str | None = None):
        self.client = client
        self.key = key
        self.ttl_ms = max(int(ttl_s * 1000), 1000)
        self.token = identity or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"

    def acquire(self) -> bool:
        return bool(self.client.set(self.key, self.token, nx=True, px=self.ttl_ms))

    def renew(self) -> bool:
        return token_locks.renew(self.client, self.key, self.token, self.ttl_ms)

    def release(self) -> bool:
        return token_locks.release(self.client, self.key, self.token)

    def holder(self) -> str | None:
        value = self.client.get(self.key)
        return value.decode() if isinstance(value, bytes) else value


class SingleBeatScheduler(DatabaseScheduler):
    """`DatabaseScheduler` that sends tasks only while it holds the single-beat lock."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.beat_lock = BeatLock(get_redis(), settings.SIGNAL_BEAT_LOCK_KEY, settings.SIGNAL_BEAT_LOCK_TTL_S)
        self.active = False
        self._announced_standby = False
        # every tick (at most a standby interval apart) beats; served by setup_schedule (see there)
        self.heartbeat = probes.Heartbeat(settings.SIGNAL_HEARTBEAT_MAX_AGE_S)
        super().__init__(*args, **kwargs)

    @property
    def standby_interval(self) -> float:
        return max(min(settings.SIGNAL_BEAT_LOCK_TTL_S / 3, 5.0), 0.2)

    def setup_schedule(self) -> None:
        # Only the scheduler that runs gets here: celery-beat also makes a lazy one to print its banner, which must
        # not take the port.
        if settings.SIGNAL_METRICS_PORT:
            probes.serve(settings.SIGNAL_METRICS_PORT, settings.SIGNAL_METRICS_HOST, self.heartbeat)
        super().setup_schedule()
        if self._hold() is False and not settings.SIGNAL_BEAT_STANDBY:
            holder = self._safe_holder()
            log.error("another celery-beat holds the single-beat lock; exiting", extra={"holder": holder})
            raise SystemExit(f"another celery-beat is running (lock {self.beat_lock.key} held by {holder})")

    def _safe_holder(self) -> str | None:
        try:
            return self.beat_lock.holder()
        except redis.RedisError:
            return None

    def _hold(self) -> bool:
        """Acquire or renew the lock; True while this beat is the active one."""
        try:
            if self.active:
                if self.beat_lock.renew():
                    return True
                log.error("celery-beat lost the single-beat lock; standing by", extra={"lock": self.beat_lock.key})
                metrics.BEAT_LOCK_LOST.inc()
                self.active = False
                self._announced_standby = False
            if self.beat_lock.acquire():
                self._become_active()
                return True
        except redis.RedisError:
            log.exception("single-beat lock unavailable; not sending tasks")
            self.active = False
            return False
        if not self._announced_standby:
            log.warning("another celery-beat is active; this one stays idle (standby)",
                        extra={"holder": self._safe_holder(), "lock": self.beat_lock.key})
            self._announced_standby = True
        return False

    def _become_active(self) -> None:
        self.active = True
        self._announced_standby = False
        log.info("celery-beat holds the single-beat lock; sending tasks",
                 extra={"lock": self.beat_lock.key, "token": self.beat_lock.token})
        try:
            sync_schedules()
        except Exception:
            log.exception("could not sync config schedules at beat start")
        # Re-read every entry: what a standby loaded at start may be stale.
        self._last_full_sync = datetime.datetime(2000, 1, 1)
        self._heap = None

    def tick(self, *args: Any, **kwargs: Any) -> float:
        self.heartbeat.beat()
        self.heartbeat.ready = True
        held = self._hold()
        metrics.BEAT_ACTIVE.set(1 if held else 0)
        if not held:
            return self.standby_interval
        interval = super().tick(*args, **kwargs)
        return min(interval, self.standby_interval) if interval else interval

    def close(self) -> None:
        try:
            super().close()
        finally:
            if self.active:
                try:
                    self.beat_lock.release()
                except redis.RedisError:
                    log.exception("could not release the single-beat lock (it expires by itself)")
                self.active = False
