"""Benchmark of the historical indicators API: a month of 5-minute bars with 3 indicators, p50/p99 latency.

Run from the repository root (needs PostgreSQL and Redis on 127.0.0.1; stops by itself in about a minute):

    .venv/bin/python -m bench.history_api            # table
    .venv/bin/python -m bench.history_api --json     # the dict returned by run()
    .venv/bin/python -m bench.history_api --gc-freeze  # gc.freeze() after start-up, as a tuned server would

What it does, against the real services:

* creates and migrates a database of its own, ``signal_bench_hist`` (dropped first if it exists), and uses Redis
  database 2 without flushing it (only this benchmark's instrument's bar-cache keys are deleted);
* loads 32 trading days of ticks for ``NSE@HISTBENCH@futures@2025-01-30`` with COPY: one tick a second on average
  (exponential gaps) from 09:15 to 15:30 IST, cumulative volume and open interest - about 720,000 ticks;
* on plain PostgreSQL, then runs the one-minute rollup refresh as celery-beat would (``signals.bars.rollup
  .refresh_pending``, the ranges the ``signal_ticks`` trigger recorded during the COPY) and times it on its own;
* asks ``GET /api/v2/signals/historical/indicators/{key}?timeframe=5m&start_time=..&end_time=..&indicators=
  [rsi 14, ema 20, macd 12/26/9]`` for the last 22 trading days (a month: ~1,650 bars, plus 680 bars of warm-up
  before the range) through Django's test client with a JWT, in one process (URL routing, auth, throttling,
  validation, bars, indicators, JSON rendering all included);
* **cold**: the bar cache emptied before each request, so bars are aggregated in SQL for the month + warm-up: from
  the one-minute rollup on plain PostgreSQL (~12k rows instead of ~720k ticks; the request first checks that
  nothing is pending for the instrument), from the 5m continuous aggregate on TimescaleDB;
  **warm**: the same request again with the bars cached in Redis (the steady state: closed bars never change
  unless a late tick arrives).

Target (issue 5): p99 under 200 ms. The script exits non-zero if the warm p99 misses it.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import numpy as np

DATABASE, REDIS_DB = "signal_bench_hist", 2
KEY = "NSE@HISTBENCH@futures@2025-01-30"
SPECS = [{"name": "rsi", "parameters": {"length": 14}}, {"name": "ema", "parameters": {"length": 20}},
         {"name": "macd", "parameters": {"fast": 12, "slow": 26, "signal": 9}}]
TARGET_P99_MS = 200.0
TIME_BUDGET_S = 75.0


def _environment() -> None:
    os.environ.update({
        "DJANGO_SETTINGS_MODULE": "signal_project.settings",
        "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{DATABASE}",
        "REDIS_URL": f"redis://127.0.0.1:6379/{REDIS_DB}",
        "CELERY_BROKER_URL": f"redis://127.0.0.1:6379/{REDIS_DB + 1}",
        "CHANNEL_LAYER_PREFIX": f"bench-{DATABASE}",
        "SIGNAL_JWT_SECRET": "bench-secret-0123456789abcdef0123456789",
        "SIGNAL_API_RATE": "1000000/min",
        "LOG_LEVEL": "WARNING",
        "DEBUG": "false",
    })


def _fresh_database() -> None:
    import psycopg

    with psycopg.connect("postgres://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{DATABASE}"')


def trading_days(last: date, count: int) -> list[date]:
    days, day = [], last
    while len(days) < count:
        if day.weekday() < 5:
            days.append(day)
        day -= timedelta(days=1)
    return sorted(days)


def _load_ticks(days: list[date], seed: int = 2030) -> int:
    """COPY about one tick a second over every session of ``days``."""
    from django.db import connection

    rng = np.random.default_rng(seed)
    ist = timedelta(hours=5, minutes=30)
    total = 0
    price = 20000.0
    with connection.cursor() as cursor:
        raw = cursor.cursor
        for day in days:
            opening = datetime(day.year, day.month, day.day, 9, 15, tzinfo=UTC) - ist
            seconds = np.cumsum(rng.exponential(1.0, 24_000))
            seconds = seconds[seconds < 6.25 * 3600]
            n = seconds.size
            prices = np.round(price + np.cumsum(rng.normal(0, 1.5, n)), 2)
            price = float(prices[-1])
            volumes = np.cumsum(rng.integers(1, 200, n))
            ois = 1_000_000 + np.cumsum(rng.integers(-50, 51, n))
            with raw.copy("COPY signal_ticks (instrument_key, time, source_id, ltp, volume, oi) FROM STDIN") as copy:
                for i in range(n):
                    copy.write_row((KEY, opening + timedelta(seconds=float(seconds[i])), f"bench/{total + i}",
                                    float(prices[i]), int(volumes[i]), int(ois[i])))
            total += n
        cursor.execute("ANALYZE signal_ticks")
    return total


def _percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, int(np.ceil(q / 100 * len(ordered))) - 1))
    return ordered[index]


def _summary(samples: list[float]) -> dict[str, float]:
    return {"n": len(samples), "p50_ms": round(statistics.median(samples), 2),
            "p99_ms": round(_percentile(samples, 99), 2), "max_ms": round(max(samples), 2),
            "mean_ms": round(statistics.fmean(samples), 2)}


def run(warm_requests: int = 300, cold_requests: int = 12, gc_freeze: bool = False) -> dict[str, Any]:
    _environment()
    _fresh_database()
    import django

    django.setup()
    from django.core.management import call_command
    from django.test import Client

    from feed.redis_client import get_redis
    from signals.bars import rollup, timescale
    from signals.bars.store import get_service

    started = time.monotonic()
    call_command("migrate", verbosity=0)
    from django.db import connection

    with connection.cursor() as cursor:
        storage = "timescaledb" if timescale.installed_version(cursor) else "postgresql"
    days = trading_days(date(2025, 1, 24), 32)
    load_started = time.monotonic()
    ticks = _load_ticks(days)
    load_s = time.monotonic() - load_started
    refresh_s = refreshed = None
    if storage == "timescaledb":
        timescale.refresh_range(datetime.combine(days[0], datetime.min.time(), UTC),
                                datetime.combine(days[-1], datetime.min.time(), UTC) + timedelta(days=1))
    elif rollup.enabled():  # what the beat task does after the COPY: fold the recorded ranges into the rollup
        refresh_started = time.monotonic()
        refreshed = rollup.refresh_pending(budget_s=600.0)
        refresh_s = time.monotonic() - refresh_started
        with connection.cursor() as cursor:
            cursor.execute(f"ANALYZE {rollup.TABLE}")  # as autovacuum would soon after

    import jwt

    token = jwt.encode({"sub": "bench", "exp": int(time.time()) + 3600, "scope": ""},
                       os.environ["SIGNAL_JWT_SECRET"], algorithm="HS256")
    client = Client(HTTP_AUTHORIZATION=f"Bearer {token}")
    month = days[-22:]
    params = {"timeframe": "5m", "start_time": f"{month[0].isoformat()}T09:15:00+05:30",
              "end_time": f"{month[-1].isoformat()}T15:30:00+05:30", "indicators": json.dumps(SPECS)}
    url = f"/api/v2/signals/historical/indicators/{KEY}?{urlencode(params)}"
    redis = get_redis()

    def clear_bars() -> None:
        names = list(redis.scan_iter(match=f"signal:bars:*{KEY}*", count=1000))
        if names:
            redis.delete(*names)

    from django.test.utils import CaptureQueriesContext

    aggregations = [0]  # requests that aggregated bars in SQL (not served from the bar cache)

    def timed() -> tuple[float, dict[str, Any]]:
        with CaptureQueriesContext(connection) as queries:
            t0 = time.perf_counter()
            response = client.get(url)
            elapsed = (time.perf_counter() - t0) * 1000
        if any("date_bin" in q["sql"] or "date_trunc" in q["sql"] for q in queries.captured_queries):
            aggregations[0] += 1
        if response.status_code != 200:
            raise SystemExit(f"request failed: {response.status_code} {response.content[:300]!r}")
        return elapsed, response.json()

    get_service()  # connections and scripts, as in a running web process
    clear_bars()
    timed()  # first request of the process: imports, compiled indicators, prepared connections
    if gc_freeze:  # what a server can do after start-up: the import-time heap leaves the collector's scans
        import gc

        gc.collect()
        gc.freeze()
    cold: list[float] = []
    for _ in range(cold_requests):
        clear_bars()
        elapsed, body = timed()
        cold.append(elapsed)
        if time.monotonic() - started > TIME_BUDGET_S / 2:
            break
    warm: list[float] = []
    aggregations[0] = 0
    for _ in range(warm_requests):
        elapsed, body = timed()
        warm.append(elapsed)
        if time.monotonic() - started > TIME_BUDGET_S:
            break
    clear_bars()
    slowest = max(range(len(warm)), key=warm.__getitem__) if warm else None
    return {
        "warm_slowest_index": slowest, "warm_requests_aggregating_ticks": aggregations[0],
        "storage": storage, "ticks": ticks, "trading_days_loaded": len(days), "load_s": round(load_s, 1),
        "bars_source": get_service().source_for("5m") or "raw_ticks",
        "rollup_refresh_s": None if refresh_s is None else round(refresh_s, 2),
        "rollup_rows_written": None if refreshed is None else refreshed["written"],
        "bars_in_range": body["count"], "warmup_bars": body["warmup_bars"], "output_keys": body["output_keys"],
        "cold": _summary(cold), "warm": _summary(warm), "target_p99_ms": TARGET_P99_MS, "gc_freeze": gc_freeze,
    }


def main() -> None:
    result = run(gc_freeze="--gc-freeze" in sys.argv)
    if "--json" in sys.argv:
        print(json.dumps(result, indent=2))
    else:
        print("historical indicators API: a month of 5m bars (RSI 14, EMA 20, MACD 12/26/9), "
              f"{result['bars_in_range']} bars + {result['warmup_bars']} warm-up, storage {result['storage']}"
              + (", gc.freeze() after start-up" if result["gc_freeze"] else ""))
        print(f"data: {result['ticks']:,} ticks over {result['trading_days_loaded']} trading days "
              f"(loaded in {result['load_s']} s)")
        if result["rollup_refresh_s"] is not None:
            print(f"rollup refresh of {result['ticks']:,} ticks took {result['rollup_refresh_s']} s "
                  f"({result['rollup_rows_written']:,} one-minute rows written), as the beat task would")
        print(f"{'':18}{'n':>5}{'p50 ms':>10}{'p99 ms':>10}{'max ms':>10}")
        for name in ("cold", "warm"):
            s = result[name]
            print(f"{name + (' (SQL)' if name == 'cold' else ' (cached)'):18}{s['n']:>5}{s['p50_ms']:>10}"
                  f"{s['p99_ms']:>10}{s['max_ms']:>10}")
        print(f"cold bars aggregated from: {result['bars_source']}")
        print(f"warm requests that aggregated bars in SQL: {result['warm_requests_aggregating_ticks']}")
        print(f"target: p99 < {TARGET_P99_MS:.0f} ms (warm: {'met' if result['warm']['p99_ms'] < TARGET_P99_MS else 'MISSED'}"
              f"; cold: {'met' if result['cold']['p99_ms'] < TARGET_P99_MS else 'missed'})")
        print("command: .venv/bin/python -m bench.history_api" + (" --gc-freeze" if result["gc_freeze"] else ""))
    if result["warm"]["p99_ms"] >= TARGET_P99_MS:
        sys.exit(1)


if __name__ == "__main__":
    main()
