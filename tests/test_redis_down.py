"""The read path with Redis down (issue 15, item 5): realtime endpoints answer from PostgreSQL with
``"source": "database"``, everything else 503 with ``Retry-After`` and the error envelope, /ready names Redis; no
500s. Each test runs the pipeline against a Redis server of its own (on a free port), then SIGKILLs it."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import redis as redis_lib
from django.core.cache import cache
from django.test import override_settings

from signals.pipeline.batch import process_batch
from tests.bars_helpers import FUTURE, make_ticks, normalised_batch, store
from tests.factories import create_config, tick
from tests.greeks_helpers import EXPIRY, batch, greeks_config, option_key, option_tick, spot_tick
from tests.support import stop_process, wait_for

pytestmark = pytest.mark.django_db
API = "/api/v2/signals"
SPOT = "NSE@NIFTY@index"
CALL = option_key("call", 24000)


class OwnRedis:
    def __init__(self, workdir: Path):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self.url = f"redis://127.0.0.1:{port}/0"
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(workdir)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: self._ping(), timeout=10)

    def _ping(self) -> bool:
        try:
            return bool(redis_lib.Redis.from_url(self.url).ping())
        except redis_lib.ConnectionError:
            return False

    def kill(self) -> None:
        stop_process(self.proc, kill=True)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    server = OwnRedis(tmp_path)
    cache = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": server.url,
                         "KEY_PREFIX": "signal-cache"}}
    try:
        with override_settings(REDIS_URL=server.url, CACHES=cache):
            yield server
    finally:
        server.kill()


def answers(client: Any, path: str, **params: Any) -> dict[str, Any]:
    response = client.get(f"{API}/{path}", params)
    assert response.status_code == 200, response.content
    return response.json()


def same_values(body: dict[str, Any]) -> Any:
    """The answer without its source, floats rounded (a float8 column may differ from Redis's JSON in the last
    digit)."""
    def rounded(value: Any) -> Any:
        if isinstance(value, float):
            return round(value, 9)
        if isinstance(value, dict):
            return {k: rounded(v) for k, v in value.items()}
        if isinstance(value, list):
            return [rounded(v) for v in value]
        return value

    return rounded({k: v for k, v in body.items() if k != "source"})


def test_realtime_price_greeks_and_chains_answer_from_the_database(own_redis: OwnRedis, auth_client: Any) -> None:
    create_config(greeks_config())
    process_batch(batch(spot_tick(24000, 0), option_tick("call", 24000, 190.0, 0.5),
                        option_tick("put", 24000, 160.0, 0.5), option_tick("call", 24100, 140.0, 0.5),
                        option_tick("put", 24100, 210.0, 0.5), spot_tick(24010, 1.0, volume=1200)))
    chain = {"expiry_date": EXPIRY}
    paths = [(f"realtime/price/{SPOT}", {}), (f"realtime/greeks/{CALL}", {}),
             (f"realtime/moneyness/{SPOT}/greeks/ATM", chain), (f"realtime/moneyness/{SPOT}/atm-iv", chain),
             (f"option-chain/{SPOT}", chain)]
    live = [answers(auth_client, path, **params) for path, params in paths]
    assert {body["source"] for body in live} == {"redis"}
    assert live[0]["ltp"] == 24010 and live[0]["volume"] == 1200

    own_redis.kill()
    with pytest.raises(redis_lib.ConnectionError):  # the rate limit's counts are on the dead server too
        cache.get("probe")
    stored = [answers(auth_client, path, **params) for path, params in paths]
    assert {body["source"] for body in stored} == {"database"}
    price, greeks, level, atm_iv, option_chain = stored
    assert same_values(price) == same_values(live[0])
    for name in ("instrument_key", "timestamp", "greeks", "underlying_key", "underlying_price", "option_price",
                 "sigma", "sigma_source", "status", "stale_underlying", "time_to_expiry", "model", "price_field"):
        assert greeks[name] == pytest.approx(live[1][name]), name
    assert greeks["fields"]["ltp"]["delta"] == pytest.approx(live[1]["fields"]["ltp"]["delta"])
    # the chain views: the same strikes, Greeks and spot as Redis gave
    assert same_values(level) == same_values(live[2])
    assert same_values(atm_iv) == same_values(live[3])
    assert same_values(option_chain) == same_values(live[4])
    assert atm_iv["spot"] == 24010 and atm_iv["atm_strike"] == 24000

    # nothing stored for it: 404, as with Redis up
    response = auth_client.get(f"{API}/realtime/price/NSE@BANKNIFTY@index")
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"


def test_realtime_indicators_answer_from_the_database(own_redis: OwnRedis, auth_client: Any) -> None:
    ticks = make_ticks([date(2025, 6, 19)], seed=13, pre_open=False)
    store(ticks[:-20])
    for name, spec in (("ind-a", {"name": "sma", "parameters": {"length": 3}, "output_key": "fast"}),
                       ("ind-b", {"name": "ema", "parameters": {"length": 5}, "output_key": "slow"})):
        create_config({"name": name, "instrument_key": "NSE@NIFTY@futures@*", "interval": "5m",
                       "frequency": "every_tick", "technical_indicators": [spec]})
    process_batch(normalised_batch(ticks[-20:], first_id=9_000_000))
    live = answers(auth_client, f"realtime/indicators/{FUTURE}", timeframe="5m")
    assert live["source"] == "redis" and set(live["values"]) == {"fast", "slow"}

    own_redis.kill()
    stored = answers(auth_client, f"realtime/indicators/{FUTURE}", timeframe="5m")
    assert stored["source"] == "database"
    assert stored["values"] == pytest.approx(live["values"]) and stored["bar_time"] == live["bar_time"]
    assert sorted(c["config_name"] for c in stored["configs"]) == ["ind-a", "ind-b"]
    response = auth_client.get(f"{API}/realtime/indicators/{FUTURE}", {"timeframe": "1h"})
    assert response.status_code == 404


def test_without_a_stored_equivalent_503_with_retry_after_and_ready_names_redis(own_redis: OwnRedis,
                                                                                 auth_client: Any,
                                                                                 client: Any) -> None:
    process_batch(batch(tick(SPOT, 24000.0, at=0.0)))
    assert client.get("/ready").status_code == 200
    own_redis.kill()
    response = auth_client.get(f"{API}/historical/bars/{SPOT}", {"timeframe": "1m"})
    assert response.status_code == 503, response.content
    assert int(response["Retry-After"]) > 0
    assert response.json()["error"]["code"] == "unavailable" and "Redis" in response.json()["error"]["message"]
    ready = client.get("/ready")
    assert ready.status_code == 503 and int(ready["Retry-After"]) > 0
    body = ready.json()
    assert body["down"] == ["redis"] and body["checks"]["database"] == "ok"
    assert body["checks"]["redis"].startswith("unreachable")
