"""Per-user REST limits (docs/REFERENCE.md §6, "Limits and quotas"): a rate per kind of request and a daily quota
per tier, both counted in Redis by one script call per request (``count_request.lua``: its two keys carry the
user's hash tag, so the data Redis may be a cluster), and the usage record a user reads back (``usage/``).

Kinds: ``realtime`` (``realtime/*``, ``option-chain/*``), ``historical`` (``historical/*``), ``writes`` (POST, PUT,
PATCH, DELETE) and ``other``; each has a rate ``SIGNAL_API_RATE_<KIND>`` (default ``SIGNAL_API_RATE``) counted in
fixed windows. The tier is the token's ``SIGNAL_TIER_CLAIM`` claim (``SIGNAL_DEFAULT_TIER`` when absent or not
configured); ``SIGNAL_TIERS`` gives each tier its requests per exchange date (0: unlimited). A refused request
answers 429 ``throttled`` with ``Retry-After`` and the limit in the body, and is counted as ``throttled`` only.
While Redis is unreachable nothing is counted and nothing is refused.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from rest_framework import permissions, throttling

from feed import keys, redis_client
from feed.redis_client import get_redis
from webapi.auth import PlatformUser
from webapi.dependencies import REDIS_DOWN

LANE_COUNT = "signal.lane_count"  # ASGI scope key: the count the read lane made before handing a request to Django
KINDS = ("realtime", "historical", "writes", "other")
PERIODS = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60, "h": 3600, "hour": 3600,
           "d": 86400, "day": 86400}
USAGE_DAYS_KEPT = 35


class LimitSettingError(ValueError):
    def __init__(self, message: str, field: str):
        super().__init__(f"{field}: {message}")
        self.field = field


@lru_cache(maxsize=64)
def parse_rate(text: str, field: str) -> tuple[int, int]:
    """``1200/min`` -> (1200, 60). Periods: s, sec, m, min, h, hour, d, day."""
    count, _, period = text.strip().partition("/")
    if not count.isdigit() or int(count) < 1 or period not in PERIODS:
        raise LimitSettingError(f"{text!r} must be N/PERIOD with N >= 1 and PERIOD s, min, hour or day "
                                "(e.g. 1200/min)", field)
    return int(count), PERIODS[period]


@lru_cache(maxsize=16)
def parse_tiers(text: str, field: str = "SIGNAL_TIERS") -> dict[str, int]:
    """``basic=50000,pro=500000,internal=0`` -> tier -> requests per day (0: unlimited)."""
    tiers: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, quota = part.partition("=")
        if not name.strip() or not quota.strip().isdigit():
            raise LimitSettingError(f"{part!r} must be TIER=REQUESTS_PER_DAY (0: unlimited)", field)
        tiers[name.strip()] = int(quota.strip())
    if not tiers:
        raise LimitSettingError("must name at least one tier, e.g. basic=50000", field)
    return tiers


def rates() -> dict[str, tuple[int, int]]:
    return {kind: parse_rate(getattr(settings, f"SIGNAL_API_RATE_{kind.upper()}"), f"SIGNAL_API_RATE_{kind.upper()}")
            for kind in KINDS}


def check_settings() -> list[LimitSettingError]:
    """Every malformed limit setting, each naming itself (start-up check)."""
    problems = []
    for kind in KINDS:
        try:
            parse_rate(getattr(settings, f"SIGNAL_API_RATE_{kind.upper()}"), f"SIGNAL_API_RATE_{kind.upper()}")
        except LimitSettingError as exc:
            problems.append(exc)
    try:
        tiers = parse_tiers(settings.SIGNAL_TIERS)
        if settings.SIGNAL_DEFAULT_TIER not in tiers:
            problems.append(LimitSettingError(f"{settings.SIGNAL_DEFAULT_TIER!r} is not one of SIGNAL_TIERS "
                                              f"({', '.join(tiers)})", "SIGNAL_DEFAULT_TIER"))
    except LimitSettingError as exc:
        problems.append(exc)
    if not settings.SIGNAL_TIER_CLAIM.strip():
        problems.append(LimitSettingError("must name a JWT claim, e.g. tier", "SIGNAL_TIER_CLAIM"))
    return problems


def request_kind(method: str, path: str) -> str:
    if method not in permissions.SAFE_METHODS:
        return "writes"
    if "/realtime/" in path or "/option-chain/" in path:
        return "realtime"
    return "historical" if "/historical/" in path else "other"


def tier_of(user: PlatformUser) -> str:
    claimed = user.claims.get(settings.SIGNAL_TIER_CLAIM)
    return claimed if isinstance(claimed, str) and claimed in parse_tiers(settings.SIGNAL_TIERS) \
        else settings.SIGNAL_DEFAULT_TIER


def exchange_day(now: float) -> tuple[str, float]:
    """(exchange date of epoch ``now`` as YYYY-MM-DD, seconds until the next exchange date starts)."""
    local = datetime.fromtimestamp(now, ZoneInfo(settings.EXCHANGE_TIMEZONE))
    midnight = datetime.combine(local.date() + timedelta(days=1), datetime.min.time(), local.tzinfo)
    return local.date().isoformat(), max(1.0, midnight.timestamp() - now)


_COUNT_REQUEST = redis_client.lua_source(__file__, "count_request.lua")
RATE_ONLY = -1  # the script's quota when the date's usage is not counted


def count_request(user: PlatformUser, kind: str, now: float, daily: bool) -> tuple[str | None, float]:
    """Count one request of ``kind`` in one round trip (``count_request.lua``): its rate window and, if ``daily``,
    the exchange date's usage and quota. Returns (the setting that refuses it or None, seconds until it would be
    allowed). While Redis is unreachable nothing is counted and nothing refused."""
    limit, period = rates()[kind]
    window = int(now // period)
    day, until_tomorrow = exchange_day(now) if daily else ("", 0.0)  # the usage key is not touched without it
    quota = parse_tiers(settings.SIGNAL_TIERS)[tier_of(user)] if daily else RATE_ONLY
    try:
        client = get_redis()
        refused = redis_client.script(client, _COUNT_REQUEST)(
            keys=[keys.rate_window(user.sub, kind, period, window), keys.usage(user.sub, day)],
            args=[limit, period + 1, kind, quota, USAGE_DAYS_KEPT * 86400])
    except REDIS_DOWN:
        return None, 0.0
    if refused == 1:
        return f"SIGNAL_API_RATE_{kind.upper()}", (window + 1) * period - now
    return ("SIGNAL_TIERS", until_tomorrow) if refused == 2 else (None, 0.0)


def refusal(user: PlatformUser, kind: str, setting: str) -> dict[str, Any]:
    """The ``limit`` a 429 answer carries for a request refused by ``setting``."""
    if setting == "SIGNAL_TIERS":
        tier = tier_of(user)
        return {"kind": "daily_quota", "tier": tier, "limit": parse_tiers(settings.SIGNAL_TIERS)[tier],
                "period_s": 86400, "setting": setting}
    limit, period = rates()[kind]
    return {"kind": kind, "limit": limit, "period_s": period, "rate": getattr(settings, setting), "setting": setting}


class KindRateThrottle(throttling.BaseThrottle):
    """The rate of the request's kind, in fixed windows of its period; with ``daily`` also the tier's requests per
    exchange date and the usage record (`usage`)."""

    daily = False
    wait_s: float | None = None

    def allow_request(self, request: Any, view: Any) -> bool:
        user = request.user
        if not isinstance(user, PlatformUser):
            return True
        kind = request_kind(request.method, request.path)
        # a request the read lane counted before handing it over (webapi.lane) is not counted twice
        counted = (getattr(request, "scope", None) or {}).get(LANE_COUNT)
        setting, wait = counted or count_request(user, kind, self.timer(), self.daily)
        if setting is None:
            return True
        self.wait_s = wait
        request.signal_limit = {**refusal(user, kind, setting), "retry_after": int(wait) + 1}
        return False

    def wait(self) -> float | None:
        return self.wait_s

    timer = staticmethod(time.time)


class RateAndQuotaThrottle(KindRateThrottle):
    """The kind's rate and the tier's daily quota, counted together (every request but ``usage/``)."""

    daily = True


def usage(user: PlatformUser, day: str | None = None) -> dict[str, Any]:
    """The user's usage record of an exchange date (default today) with the limits that apply to it."""
    today, until_tomorrow = exchange_day(KindRateThrottle.timer())
    day = day or today
    raw = get_redis().hgetall(keys.usage(user.sub, day))
    counts = {k.decode(): int(v) for k, v in raw.items()}
    tier = tier_of(user)
    quota = parse_tiers(settings.SIGNAL_TIERS)[tier]
    total = counts.get("total", 0)
    return {
        "user": user.sub, "tier": tier, "date": day,
        "usage": {"total": total, **{kind: counts.get(kind, 0) for kind in KINDS},
                  "throttled": counts.get("throttled", 0)},
        "quota": {"requests_per_day": quota or None,
                  "remaining": max(0, quota - total) if quota and day == today else None,
                  "resets_in_s": int(until_tomorrow) + 1 if day == today else None},
        "rates": {kind: getattr(settings, f"SIGNAL_API_RATE_{kind.upper()}") for kind in KINDS}
        | {"websocket_messages": websocket_rate()},
    }


def websocket_rate() -> str | None:
    """The WebSocket consumer's message rate (its settings, SIGNAL_WS_MESSAGES_PER_S and SIGNAL_WS_MESSAGE_BURST),
    as text; None where the consumer sets none."""
    per_s = getattr(settings, "SIGNAL_WS_MESSAGES_PER_S", None)
    burst = getattr(settings, "SIGNAL_WS_MESSAGE_BURST", None)
    if per_s is None:
        return None
    return f"{per_s:g}/s" + (f" (bursts of {burst})" if burst is not None else "")
