"""Stream lag and queue lengths: gathered by a beat task into a Redis hash, exported by `/metrics`.

Gathering in one place (rather than in every web replica's scrape) keeps scrapes cheap and consistent.
"""

from __future__ import annotations

import time
from typing import Any

import redis
from django.conf import settings
from prometheus_client.core import GaugeMetricFamily

from feed import keys
from feed.redis_client import get_redis
from feed.streams import text
from signals.monitoring.broker import queue_lengths

METRICS_KEY = keys.stream_metrics()


def queue_names() -> list[str]:
    return sorted({settings.SIGNAL_DEFAULT_QUEUE, *settings.SIGNAL_QUEUE_ROUTES.values()})


def collect_stream_metrics() -> dict[str, float]:
    client = get_redis()
    values: dict[str, float] = {}
    # The streams the bridges joined, not a SCAN: the keyspace holds about 100,000 of the service's own keys an
    # hour (batch once-keys), and a SCAN of them took a tick worker process 80 ms every run.
    for stream in sorted(text(name) for name in client.smembers(keys.tick_streams())):
        try:
            groups = client.xinfo_groups(stream)
        except redis.ResponseError:  # deleted since; a bridge adds it again if it comes back
            client.srem(keys.tick_streams(), stream)
            continue
        for group in groups:
            if text(group["name"]) == settings.SIGNAL_CONSUMER_GROUP:
                values[f"lag|{stream}"] = float(group.get("lag") or 0)
                values[f"pending|{stream}"] = float(group.get("pending") or 0)
    values[f"length|{settings.SIGNAL_DEAD_LETTER_STREAM}"] = float(client.xlen(settings.SIGNAL_DEAD_LETTER_STREAM))
    queues = queue_names()
    for queue, waiting in zip(queues, queue_lengths(queues), strict=True):
        values[f"queue|{queue}"] = float(waiting)
    values["updated|"] = time.time()
    pipe = client.pipeline()
    pipe.delete(METRICS_KEY)
    pipe.hset(METRICS_KEY, mapping=values)
    pipe.expire(METRICS_KEY, 300)
    pipe.execute()
    return values


class StreamMetricsCollector:
    """A Prometheus collector reading what `collect_stream_metrics` last stored."""

    def collect(self) -> Any:
        lag = GaugeMetricFamily("signal_stream_lag", "Entries not yet delivered to the consumer group", labels=["stream"])
        pending = GaugeMetricFamily("signal_stream_pending", "Entries delivered but not acknowledged", labels=["stream"])
        queue = GaugeMetricFamily("signal_celery_queue_length", "Tasks waiting in a Celery queue", labels=["queue"])
        dead = GaugeMetricFamily("signal_dead_letter_length", "Entries in the dead-letter stream", labels=["stream"])
        updated = GaugeMetricFamily("signal_stream_metrics_updated", "When stream metrics were last gathered")
        try:
            raw = get_redis().hgetall(METRICS_KEY)
        except redis.RedisError:
            raw = {}
        families = {"lag": lag, "pending": pending, "queue": queue, "length": dead}
        for field, value in raw.items():
            kind, _, label = text(field).partition("|")
            if kind == "updated":
                updated.add_metric([], float(value))
            elif kind in families:
                families[kind].add_metric([label], float(value))
        yield from (lag, pending, queue, dead, updated)
