"""Discovery and stored-results routes (issue 18): instruments, expiries, stored computations, a level's history,
multi-instrument realtime reads; over ticks sent through the bridge and a real worker, and their 400/404 cases."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection

from signals.ingest.bridge import BridgeSettings, StreamBridge
from signals.pipeline.batch import process_batch
from tests.factories import T0, create_config, fields, price_config, tick
from tests.greeks_helpers import EXPIRY, SPOT, at, batch, greeks_config, option_key, option_tick, spot_tick
from tests.support import wait_for
from tests.test_redis_down import own_redis  # noqa: F401  (the fixture: a Redis server a test may kill)

API = "/api/v2/signals"
STREAM = "tick_stream:NSE@NIFTY"
LATER = "2025-07-03"
CALL, PUT = option_key("call", 24000), option_key("put", 24000)
SPAN = {"start_time": (T0 - timedelta(minutes=5)).isoformat(), "end_time": (T0 + timedelta(minutes=10)).isoformat()}


def error(response: Any, status: int, field: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.content
    body = response.json()["error"]
    if field is not None:
        assert body.get("field") == field, body
    return body


def count(sql: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute(sql)
        return cursor.fetchone()[0]


@pytest.mark.django_db(transaction=True)
def test_routes_over_ticks_sent_through_the_bridge_and_a_worker(start_worker: Any, r: Any, auth_client: Any) -> None:
    create_config(greeks_config())
    price = create_config(price_config())
    start_worker("disc-e2e")
    sent = [spot_tick(24000, 0), option_tick("call", 24000, 190.0, 1), option_tick("put", 24000, 160.0, 1),
            option_tick("call", 24100, 140.0, 2), tick(option_key("call", 24000, LATER), 260.0, at=2),
            tick("NSE@NIFTY@futures@2025-06-26", 24050.0, at=2), spot_tick(24010, 70),
            option_tick("call", 24000, 195.0, 71)]
    for body in sent:
        r.xadd(STREAM, fields(body))
    bridge = StreamBridge(r, replace(BridgeSettings.from_django(), queue_routes={"NSE@NIFTY": "disc-e2e"}),
                          consumer="disc")
    bridge.discover()
    assert bridge.handle(bridge.read()) == len(sent)
    wait_for(lambda: r.xpending(STREAM, "signal_service")["pending"] == 0 and
             count("SELECT count(*) FROM signal_ticks") == len(sent), timeout=60)

    page = auth_client.get(f"{API}/instruments/", {"underlying": "nse@nifty@index", "product": "option",
                                                   "limit": 2}).json()
    assert page["count"] == 4 and len(page["results"]) == 2 and page["next"]
    first = page["results"][0]
    assert first["instrument_key"] == CALL and first["strike"] == 24000 and first["right"] == "call"
    assert (first["first_seen"], first["last_seen"]) == ("2025-06-20T04:00:01+00:00", "2025-06-20T04:01:11+00:00")

    chain = auth_client.get(f"{API}/instruments/NSE@NIFTY@index/expiries/").json()
    assert [e["expiry"] for e in chain["expiries"]] == [EXPIRY, LATER]
    near = chain["expiries"][0]
    assert near["future"] == "NSE@NIFTY@futures@2025-06-26" and near["strike_count"] == 2
    assert [s["strike"] for s in near["strikes"]] == [24000, 24100] and near["strikes"][1]["put"] is None
    assert near["strikes"][0]["call"]["live"] is True and chain["reference_time"] == "2025-06-20T04:01:11+00:00"

    computed = auth_client.get(f"{API}/historical/computed/{CALL}", SPAN).json()
    kinds = [(p["computation_type"], p["name"]) for p in computed["series"]]
    assert kinds.count(("greeks", "option_greeks")) == 2 and kinds.count(("internal_function", "price")) == 2
    prices = auth_client.get(f"{API}/historical/computed/{SPOT}",
                             {**SPAN, "config_id": price.id, "name": "price"}).json()["series"]
    assert [p["results"]["ltp"] for p in prices] == [24000, 24010] and prices[1]["results"]["change"] == 10

    level = auth_client.get(f"{API}/historical/moneyness/{SPOT}/greeks/ATM",
                            {**SPAN, "expiry_date": EXPIRY}).json()
    assert level["source"] == "stored" and [p["time"] for p in level["series"]] == [
        "2025-06-20T04:00:00+00:00", "2025-06-20T04:01:00+00:00"]
    assert level["series"][1]["calls"][0]["option_price"] == 195.0 and level["series"][0]["atm_strike"] == 24000

    many = auth_client.get(f"{API}/realtime/price", {"keys": f"{SPOT},{CALL},NSE@BANKNIFTY@index"}).json()
    assert [b["ltp"] for b in many["results"]] == [24010, 195.0] and many["missing"] == ["NSE@BANKNIFTY@index"]
    greeks = auth_client.get(f"{API}/realtime/greeks", {"keys": f"{CALL},{PUT}"}).json()
    assert [b["option_price"] for b in greeks["results"]] == [195.0, 160.0] and greeks["source"] == "redis"
    connection.close()


@pytest.fixture
def chain(db: Any, r: Any) -> Any:
    config = create_config(greeks_config())
    process_batch(batch(spot_tick(24000, 0), option_tick("call", 24000, 190.0, 1), option_tick("put", 24000, 160.0, 1),
                        option_tick("call", 24100, 140.0, 2), tick("NSE@BANKNIFTY@index", 50000.0, at=3)))
    return config


def test_instrument_filters_pagination_and_errors(chain: Any, auth_client: Any) -> None:
    listing = auth_client.get(f"{API}/instruments/").json()
    assert listing["count"] == 5 and [i["instrument_key"] for i in listing["results"]][0] == "NSE@BANKNIFTY@index"
    assert auth_client.get(f"{API}/instruments/", {"exchange": "nse", "product": "index"}).json()["count"] == 2
    assert auth_client.get(f"{API}/instruments/", {"expiry": "26-JUN-2025"}).json()["count"] == 3
    assert auth_client.get(f"{API}/instruments/", {"search": "put"}).json()["results"][0]["instrument_key"] == PUT
    second = auth_client.get(f"{API}/instruments/", {"limit": 2, "offset": 2}).json()["results"]
    assert [i["instrument_key"] for i in second] == [CALL, option_key("call", 24100)]
    error(auth_client.get(f"{API}/instruments/", {"product": "bond"}), 400, "product")
    error(auth_client.get(f"{API}/instruments/", {"expiry": "2025-13-01"}), 400, "expiry")
    error(auth_client.get(f"{API}/instruments/", {"underlying": "NSE"}), 400, "underlying")
    error(auth_client.get(f"{API}/instruments/", {"limit": "0"}), 400, "limit")
    error(auth_client.get(f"{API}/instruments/NSE@NIFTY@index/expiries/", {"expiry": "x"}), 400, "expiry")
    error(auth_client.get(f"{API}/instruments/{CALL}/expiries/"), 400, "underlying")
    error(auth_client.get(f"{API}/instruments/NSE@FINNIFTY@index/expiries/"), 404)
    error(auth_client.get(f"{API}/instruments/NSE@NIFTY@index/expiries/", {"expiry": LATER}), 404)
    only = auth_client.get(f"{API}/instruments/NSE@NIFTY@index/expiries/", {"expiry": EXPIRY}).json()
    assert only["count"] == 1 and only["expiries"][0]["live_count"] == 3


def test_live_flag_follows_tick_time_of_the_family(settings: Any, chain: Any, auth_client: Any) -> None:
    settings.SIGNAL_LIVE_DATA_MAX_AGE_S = 1.5  # the 24000 contracts ticked 1 s after the spot, the 24100 call 2 s
    process_batch(batch(spot_tick(24000, 3), start=10))
    strikes = auth_client.get(f"{API}/instruments/NSE@NIFTY@index/expiries/").json()["expiries"][0]["strikes"]
    assert [(s["call"]["live"], (s["put"] or {}).get("live")) for s in strikes] == [(False, False), (True, None)]


def test_stored_result_errors(chain: Any, auth_client: Any) -> None:
    error(auth_client.get(f"{API}/historical/computed/NSE@NIFTY@opt"), 400, "instrument_key")
    error(auth_client.get(f"{API}/historical/computed/NSE@FINNIFTY@index"), 404)
    error(auth_client.get(f"{API}/historical/computed/{CALL}", {"computation_type": "x"}), 400, "computation_type")
    error(auth_client.get(f"{API}/historical/computed/{CALL}", {"config_id": "a"}), 400, "config_id")
    error(auth_client.get(f"{API}/historical/computed/{CALL}", {**SPAN, "start_time": SPAN["end_time"]}), 400,
          "start_time")
    level = f"{API}/historical/moneyness/{SPOT}/greeks"
    error(auth_client.get(f"{level}/ATM"), 400, "expiry_date")
    error(auth_client.get(f"{level}/XTM", {"expiry_date": EXPIRY}), 400, "level")
    error(auth_client.get(f"{level}/ATM", {"expiry_date": EXPIRY, "timeframe": "9x"}), 400, "timeframe")
    error(auth_client.get(f"{level}/ATM", {"expiry_date": LATER}), 404)
    error(auth_client.get(f"{API}/historical/moneyness/NSE@FINNIFTY@index/greeks/ATM", {"expiry_date": EXPIRY}), 404)
    error(auth_client.get(f"{API}/realtime/price"), 400, "keys")
    error(auth_client.get(f"{API}/realtime/price", {"keys": "NSE@NIFTY@index,bad"}), 400, "keys")
    error(auth_client.get(f"{API}/realtime/greeks", {"keys": SPOT}), 400, "keys")
    too_many = ",".join(option_key("call", 20000 + i) for i in range(51))
    assert "at most 50" in error(auth_client.get(f"{API}/realtime/price", {"keys": too_many}), 400, "keys")["message"]
    only_greeks = auth_client.get(f"{API}/historical/computed/{CALL}", {**SPAN, "computation_type": "greeks"}).json()
    assert only_greeks["count"] == 1 and only_greeks["series"][0]["results"]["ltp"]["option_price"] == 190.0


def test_level_history_is_recomputed_from_stored_ticks_when_nothing_was_stored(chain: Any, auth_client: Any) -> None:
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM signal_greeks")
    body = auth_client.get(f"{API}/historical/moneyness/{SPOT}/greeks/ATM",
                           {**SPAN, "expiry_date": EXPIRY, "timeframe": "5m"}).json()
    assert body["source"] == "recomputed" and len(body["series"]) == 1
    point = body["series"][0]
    assert point["atm_strike"] == 24000 and point["calls"][0]["option_price"] == 190.0
    assert point["puts"][0]["option_price"] == 160.0 and point["averages"]["call"]["count"] == 1
    assert count("SELECT count(*) FROM signal_greeks") == 3  # stored for the next reader
    assert at(0) == T0.timestamp()


@pytest.mark.django_db
def test_with_redis_down_multi_key_reads_answer_from_the_database(own_redis: Any, auth_client: Any) -> None:  # noqa: F811
    create_config(greeks_config())
    process_batch(batch(spot_tick(24000, 0), option_tick("call", 24000, 190.0, 1), option_tick("put", 24000, 160.0, 1)))
    prices = auth_client.get(f"{API}/realtime/price", {"keys": f"{SPOT},{CALL}"}).json()
    greeks = auth_client.get(f"{API}/realtime/greeks", {"keys": f"{CALL},{PUT}"}).json()
    assert prices["source"] == greeks["source"] == "redis"
    own_redis.kill()
    stored_prices = auth_client.get(f"{API}/realtime/price", {"keys": f"{SPOT},{CALL}"}).json()
    assert stored_prices["source"] == "database" and stored_prices["results"] == prices["results"]
    stored_greeks = auth_client.get(f"{API}/realtime/greeks", {"keys": f"{CALL},{PUT}"}).json()
    assert stored_greeks["source"] == "database"
    assert [g["greeks"]["iv"] for g in stored_greeks["results"]] == pytest.approx(
        [g["greeks"]["iv"] for g in greeks["results"]])
    chain = auth_client.get(f"{API}/instruments/NSE@NIFTY@index/expiries/").json()
    assert chain["expiries"][0]["strikes"][0]["call"]["live"] is None and chain["reference_time"] is None
    usage = auth_client.get(f"{API}/usage/")
    assert usage.status_code == 503 and int(usage["Retry-After"]) > 0
