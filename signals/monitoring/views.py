"""Operational endpoints: /health (alive), /ready (dependencies reachable), /metrics (Prometheus)."""

from __future__ import annotations

import redis
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from feed.probes import metrics_registry
from feed.redis_client import get_redis
from signals.monitoring.streams import StreamMetricsCollector


@require_GET
def health(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


def _check(name: str, fn: object) -> tuple[str, str]:
    try:
        fn()  # type: ignore[operator]
    except Exception as exc:
        return name, f"unreachable: {type(exc).__name__}: {exc}"
    return name, "ok"


def _database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


@require_GET
def ready(request: HttpRequest) -> JsonResponse:
    checks = dict([
        _check("database", _database),
        _check("redis", lambda: get_redis().ping()),
        _check("broker", lambda: redis.Redis.from_url(settings.CELERY_BROKER_URL, socket_timeout=2).ping()),
    ])
    down = [name for name, outcome in checks.items() if outcome != "ok"]
    response = JsonResponse({"status": "not_ready" if down else "ready", "down": down, "checks": checks},
                            status=503 if down else 200)
    if down:
        response["Retry-After"] = str(settings.SIGNAL_RETRY_AFTER_S)
    return response


_stream_collector = StreamMetricsCollector()


def exposition() -> bytes:
    """What `/metrics` answers (the dashboard's health panel reads the same figures)."""
    return generate_latest(metrics_registry()) + generate_latest(_StreamRegistry())


@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    return HttpResponse(exposition(), content_type=CONTENT_TYPE_LATEST)


class _StreamRegistry(CollectorRegistry):
    def __init__(self) -> None:
        super().__init__(auto_describe=False)
        self.register(_stream_collector)
