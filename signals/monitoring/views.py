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
    ok = all(v == "ok" for v in checks.values())
    return JsonResponse({"status": "ready" if ok else "not_ready", "checks": checks}, status=200 if ok else 503)


_stream_collector = StreamMetricsCollector()


@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    body = generate_latest(metrics_registry()) + generate_latest(_StreamRegistry())
    return HttpResponse(body, content_type=CONTENT_TYPE_LATEST)


class _StreamRegistry(CollectorRegistry):
    def __init__(self) -> None:
        super().__init__(auto_describe=False)
        self.register(_stream_collector)
