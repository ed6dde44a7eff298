"""System checks: refuse to start with a missing or malformed setting, naming it."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from django.conf import settings
from django.core.checks import Error, Warning, register

from webapi.auth import public_key
from webapi.quotas import check_settings


@register()
def signal_settings(app_configs: Any, **kwargs: Any) -> list[Any]:
    errors: list[Any] = []
    if not settings.SIGNAL_JWT_SECRET and not settings.SIGNAL_JWT_PUBLIC_KEY:
        errors.append(Error("SIGNAL_JWT_SECRET (HS256) or SIGNAL_JWT_PUBLIC_KEY (RS256) must be set",
                            hint="export SIGNAL_JWT_SECRET=... with the platform's token secret", id="signals.E001"))
    elif settings.SIGNAL_JWT_SECRET and len(settings.SIGNAL_JWT_SECRET) < 32 and not settings.DEBUG:
        errors.append(Error("SIGNAL_JWT_SECRET is shorter than 32 characters (RFC 7518 §3.2)", id="signals.E002"))
    if settings.SIGNAL_JWT_PUBLIC_KEY:
        try:
            key = public_key(settings.SIGNAL_JWT_PUBLIC_KEY)
        except OSError as exc:
            errors.append(Error(f"SIGNAL_JWT_PUBLIC_KEY cannot be read: {exc}", id="signals.E003"))
        else:
            if "PUBLIC KEY" not in key:
                errors.append(Error("SIGNAL_JWT_PUBLIC_KEY is not a PEM public key", id="signals.E003"))
    for name in ("REDIS_URL", "CHANNEL_LAYER_URL", "CACHE_URL"):
        value = getattr(settings, name)
        if not value.startswith(("redis://", "rediss://", "unix://")):
            errors.append(Error(f"{name} must be a redis:// URL, got {value!r}", id="signals.E004"))
        elif settings.REDIS_CLUSTER and name != "REDIS_URL" and value == settings.REDIS_URL:
            errors.append(Error(f"{name} must name a Redis server of its own when REDIS_CLUSTER is on (it is "
                                "REDIS_URL, a cluster node)", id="signals.E009"))
    if settings.REDIS_CLUSTER and urlsplit(settings.REDIS_URL).path not in ("", "/", "/0"):
        errors.append(Error(f"REDIS_URL must use database 0 when REDIS_CLUSTER is on (a cluster has no other), got "
                            f"{settings.REDIS_URL!r}", id="signals.E009"))
    if not settings.CELERY_BROKER_URL.startswith(("redis://", "rediss://", "unix://", "amqp://", "amqps://",
                                                  "pyamqp://")):
        errors.append(Error(f"CELERY_BROKER_URL must be a redis:// or amqp:// URL, got "
                            f"{settings.CELERY_BROKER_URL!r}", id="signals.E004"))
    if settings.DATABASES["default"].get("ENGINE") != "django.db.backends.postgresql":
        errors.append(Error("DATABASE_URL must point at PostgreSQL (postgres://...)", id="signals.E005"))
    for name in ("SIGNAL_BATCH_SIZE", "SIGNAL_OUTPUT_LIST_MAXLEN", "SIGNAL_OUTPUT_STREAM_MAXLEN",
                 "SIGNAL_MAX_DELIVERIES", "SIGNAL_WS_MAX_CONNECTIONS_PER_USER", "SIGNAL_WS_MAX_SUBSCRIPTIONS",
                 "SIGNAL_WS_MAX_MESSAGE_BYTES", "SIGNAL_WS_MESSAGE_BURST"):
        if getattr(settings, name) < 1:
            errors.append(Error(f"{name} must be at least 1", id="signals.E006"))
    for name in ("SIGNAL_WS_MESSAGES_PER_S", "SIGNAL_WS_SLOW_CLOSE_S"):
        if not getattr(settings, name) > 0:
            errors.append(Error(f"{name} must be a positive number of seconds or messages", id="signals.E006"))
    if not settings.SIGNAL_STREAM_PATTERNS:
        errors.append(Error("SIGNAL_STREAM_PATTERNS must name at least one stream or pattern", id="signals.E007"))
    visibility = settings.CELERY_BROKER_TRANSPORT_OPTIONS.get("visibility_timeout", 3600)
    if visibility <= settings.CELERY_TASK_TIME_LIMIT and not getattr(settings, "TESTING", False):
        errors.append(Warning("CELERY_VISIBILITY_TIMEOUT should exceed CELERY_TASK_TIME_LIMIT, or a slow task may "
                              "run twice", id="signals.W001"))
    try:
        ZoneInfo(settings.EXCHANGE_TIMEZONE)
    except Exception:
        errors.append(Error(f"EXCHANGE_TIMEZONE {settings.EXCHANGE_TIMEZONE!r} is not a known time zone",
                            id="signals.E008"))
    errors += [Error(str(problem), id="signals.E009") for problem in check_settings()]
    for name, low in (("SIGNAL_API_MAX_KEYS", 1), ("SIGNAL_LIVE_DATA_MAX_AGE_S", 0), ("SIGNAL_COMPRESS_MIN_BYTES", 0),
                      ("SIGNAL_MONEYNESS_RECOMPUTE_MAX_HOURS", 0), ("SIGNAL_READ_LANE_THREADS", 1)):
        if getattr(settings, name) < low:
            errors.append(Error(f"{name}: must be at least {low}", id="signals.E010"))
    if settings.SECRET_KEY.startswith("dev-only") and not settings.DEBUG:
        errors.append(Warning("DJANGO_SECRET_KEY is the development default; set it in production", id="signals.W002"))
    return errors
