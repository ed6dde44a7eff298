"""Greeks / moneyness / option-chain / history endpoints: shapes, 400s naming the bad parameter, 404s, bucketing."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from rest_framework.test import APIClient

from signals.pipeline.batch import process_batch
from tests.factories import T0, create_config, tick
from tests.greeks_helpers import (
    EXPIRY,
    assert_matches,
    at,
    batch,
    greeks_config,
    option_key,
    option_tick,
    spot_tick,
    vollib_bsm,
    years,
)

pytestmark = pytest.mark.django_db
API = "/api/v2/signals"
CALL = option_key("call", 24000)


def error(response: Any, status: int, field: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.content
    body = response.json()["error"]
    assert body["message"]
    if field is not None:
        assert body.get("field") == field, body
    return body


@pytest.fixture
def chain(r: Any) -> Any:
    config = create_config(greeks_config())
    process_batch(batch(spot_tick(24000, 0), option_tick("call", 24000, 190.0, 0.5),
                        option_tick("put", 24000, 160.0, 0.5), option_tick("call", 24100, 140.0, 0.5),
                        option_tick("put", 24100, 210.0, 0.5)))
    return config


def test_realtime_greeks_shape(chain: Any, auth_client: Any) -> None:
    body = auth_client.get(f"{API}/realtime/greeks/nse@nifty@equity_options@26-JUN-2025@CE@24000").json()
    assert body["instrument_key"] == CALL and body["timestamp"] == "2025-06-20T04:00:00.500000+00:00"
    assert set(body["greeks"]) == {"iv", "delta", "gamma", "theta", "vega", "rho"}
    assert (body["underlying_price"], body["option_price"], body["sigma_source"], body["status"]) == (
        24000, 190.0, "implied", "ok")
    assert body["stale_underlying"] is False and body["price_field"] == "ltp" and body["model"] == \
        "black_scholes_merton"
    assert_matches(body["greeks"], vollib_bsm(190.0, 24000, 24000, years(at(0.5), EXPIRY), 0.065, 0.0, "call"))
    assert body["fields"]["ltp"]["iv"] == body["greeks"]["iv"]


def test_realtime_greeks_errors(chain: Any, auth_client: Any) -> None:
    error(auth_client.get(f"{API}/realtime/greeks/NSE@NIFTY@options@2025-13-40@call@1"), 400, "instrument_key")
    assert "not an option" in error(auth_client.get(f"{API}/realtime/greeks/NSE@NIFTY@index"), 400,
                                    "instrument_key")["message"]
    assert "unknown instrument" in error(auth_client.get(f"{API}/realtime/greeks/{option_key('call', 99000)}"),
                                         404)["message"]
    bank = "NSE@BANKNIFTY@options@2025-06-26@call@50000"  # seen on the stream, but no Greeks config covers it
    process_batch(batch(tick(bank, 300.0, at=1.0), stream="tick_stream:NSE@BANKNIFTY"))
    assert "no Greeks computed yet" in error(auth_client.get(f"{API}/realtime/greeks/{bank}"), 404)["message"]
    assert APIClient().get(f"{API}/realtime/greeks/{CALL}").status_code == 401


def test_moneyness_and_chain_parameter_errors(chain: Any, auth_client: Any) -> None:
    money = f"{API}/realtime/moneyness/NSE@NIFTY@index"
    error(auth_client.get(f"{money}/greeks/ATM"), 400, "expiry_date")
    error(auth_client.get(f"{money}/greeks/ATM", {"expiry_date": "31-02-2025"}), 400, "expiry_date")
    assert "D25" in error(auth_client.get(f"{money}/greeks/XTM2", {"expiry_date": EXPIRY}), 400, "level")["message"]
    error(auth_client.get(f"{money}/greeks/OTM0", {"expiry_date": EXPIRY}), 400, "level")
    error(auth_client.get(f"{money}/greeks/OTM1", {"expiry_date": EXPIRY, "strike_step": "-5"}), 400, "strike_step")
    error(auth_client.get(f"{API}/realtime/moneyness/{CALL}/greeks/ATM", {"expiry_date": EXPIRY}), 400, "underlying")
    error(auth_client.get(f"{API}/realtime/moneyness/NSE@NIFTY/atm-iv", {"expiry_date": EXPIRY}), 400, "underlying")
    error(auth_client.get(f"{money}/atm-iv"), 400, "expiry_date")
    error(auth_client.get(f"{API}/option-chain/NSE@NIFTY@index"), 400, "expiry_date")
    assert "NSE@BANKNIFTY@index" in error(auth_client.get(f"{API}/option-chain/NSE@BANKNIFTY@index",
                                                          {"expiry_date": EXPIRY}), 404)["message"]
    missing = error(auth_client.get(f"{money}/atm-iv", {"expiry_date": "2025-07-03"}), 404)["message"]
    assert "2025-06-26" in missing  # lists the expiries that exist


def test_atm_iv_and_level_shapes(chain: Any, auth_client: Any) -> None:
    body = auth_client.get(f"{API}/realtime/moneyness/NSE@NIFTY@index/atm-iv", {"expiry_date": EXPIRY}).json()
    assert {"iv", "call_iv", "put_iv", "atm_strike", "spot", "timestamp"} <= set(body)
    assert body["atm_strike"] == 24000 and body["spot"] == 24000
    # spot exactly on a listed strike: that strike's IV, call and put averaged
    t = years(at(0.5), EXPIRY)
    call = vollib_bsm(190.0, 24000, 24000, t, 0.065, 0.0, "call")["iv"]
    put = vollib_bsm(160.0, 24000, 24000, t, 0.065, 0.0, "put")["iv"]
    assert body["iv"] == pytest.approx((call + put) / 2, rel=1e-9)
    assert body["call_iv"] == pytest.approx(call, rel=1e-9) and body["put_iv"] == pytest.approx(put, rel=1e-9)
    level = auth_client.get(f"{API}/realtime/moneyness/NSE@NIFTY@index/greeks/ATM", {"expiry_date": EXPIRY}).json()
    assert {"underlying", "expiry_date", "level", "spot", "atm_strike", "strikes", "calls", "puts",
            "averages"} <= set(level)
    assert level["averages"]["call"]["iv"] == pytest.approx(call, rel=1e-9)


def test_historical_greeks_raw_and_bucketed_last_value(r: Any, auth_client: Any) -> None:
    create_config(greeks_config())
    # 09:30:10, 09:30:50 and 09:31:20 IST (T0 is 09:30:00 IST)
    process_batch(batch(spot_tick(24000, 0), option_tick("call", 24000, 190.0, 10), option_tick("call", 24000, 195.0, 50),
                        spot_tick(24050, 79), option_tick("call", 24000, 220.0, 80)))
    url = f"{API}/historical/greeks/{CALL}"
    span = {"start_time": (T0 - timedelta(minutes=5)).isoformat(), "end_time": (T0 + timedelta(minutes=5)).isoformat()}
    raw = auth_client.get(url, span).json()
    assert raw["timeframe"] is None and [p["option_price"] for p in raw["series"]] == [190.0, 195.0, 220.0]
    minute = auth_client.get(url, {**span, "timeframe": "1m"}).json()
    assert [(p["time"], p["option_price"]) for p in minute["series"]] == [
        ("2025-06-20T04:00:00+00:00", 195.0), ("2025-06-20T04:01:00+00:00", 220.0)]
    point = minute["series"][0]
    assert point["tick_time"] == "2025-06-20T04:00:50+00:00" and point["status"] == "ok"
    assert_matches(point, vollib_bsm(195.0, 24000, 24000, years(at(50), EXPIRY), 0.065, 0.0, "call"))
    # custom sizes are aligned to the 09:15 session open: 7m bars start 09:29, 09:36, ... IST
    seven = auth_client.get(url, {**span, "timeframe": "custom_7"}).json()
    assert seven["timeframe"] == "7m"
    assert [(p["time"], p["option_price"]) for p in seven["series"]] == [("2025-06-20T03:59:00+00:00", 220.0)]
    assert auth_client.get(url, {**span, "start_time": T0.isoformat(), "timeframe": "1m"}).json()["series"][0][
        "option_price"] == 195.0


def test_historical_parameter_errors(chain: Any, auth_client: Any) -> None:
    url = f"{API}/historical/greeks/{CALL}"
    assert "accepted" in error(auth_client.get(url, {"timeframe": "7x"}), 400, "timeframe")["message"]
    error(auth_client.get(url, {"start_time": "2025-06-20T10:00:00+05:30", "end_time": "2025-06-20T09:00:00+05:30"}),
          400, "start_time")
    error(auth_client.get(url, {"start_time": "yesterday"}), 400, "start_time")
    error(auth_client.get(url, {"end_time": "2025-06-20T10:00:00"}), 400, "end_time")  # no offset
    error(auth_client.get(url, {"price_field": "vwap"}), 400, "price_field")
    error(auth_client.get(f"{API}/historical/greeks/NSE@NIFTY@index"), 400, "instrument_key")
    error(auth_client.get(f"{API}/historical/greeks/{option_key('put', 12345)}"), 404)
    atm = f"{API}/historical/moneyness/NSE@NIFTY@index/atm-iv"
    error(auth_client.get(atm), 400, "expiry_date")
    error(auth_client.get(atm, {"expiry_date": EXPIRY, "timeframe": "0m"}), 400, "timeframe")
    error(auth_client.get(f"{API}/historical/moneyness/NSE@XYZ@index/atm-iv", {"expiry_date": EXPIRY}), 404)


def test_historical_atm_iv_series(r: Any, auth_client: Any) -> None:
    create_config(greeks_config())
    ticks = [spot_tick(24000, 0)]
    for right, k, p in (("call", 24000, 190.0), ("put", 24000, 160.0), ("call", 24100, 140.0), ("put", 24100, 210.0)):
        ticks.append(option_tick(right, k, p, 1))
    ticks.append(spot_tick(24050, 60))
    for right, k, p in (("call", 24000, 220.0), ("put", 24000, 140.0), ("call", 24100, 165.0), ("put", 24100, 185.0)):
        ticks.append(option_tick(right, k, p, 61))
    process_batch(batch(*ticks))
    body = auth_client.get(f"{API}/historical/moneyness/NSE@NIFTY@index/atm-iv", {
        "expiry_date": EXPIRY, "timeframe": "1m", "start_time": T0.isoformat(),
        "end_time": (T0 + timedelta(minutes=2)).isoformat()}).json()
    assert [p["time"] for p in body["series"]] == ["2025-06-20T04:00:00+00:00", "2025-06-20T04:01:00+00:00"]
    first, second = body["series"]
    t1 = years(at(1), EXPIRY)
    iv0 = (vollib_bsm(190.0, 24000, 24000, t1, 0.065, 0.0, "call")["iv"]
           + vollib_bsm(160.0, 24000, 24000, t1, 0.065, 0.0, "put")["iv"]) / 2
    assert (first["spot"], first["atm_strike"]) == (24000, 24000) and first["iv"] == pytest.approx(iv0, rel=1e-9)
    t2 = years(at(61), EXPIRY)
    lo = [vollib_bsm(p, 24050, 24000, t2, 0.065, 0.0, right)["iv"] for right, p in (("call", 220.0), ("put", 140.0))]
    hi = [vollib_bsm(p, 24050, 24100, t2, 0.065, 0.0, right)["iv"] for right, p in (("call", 165.0), ("put", 185.0))]
    assert second["spot"] == 24050 and second["atm_strike"] == 24000  # a tie goes to the lower strike
    assert second["iv"] == pytest.approx((sum(lo) / 2 + sum(hi) / 2) / 2, rel=1e-9)
    assert second["call_iv"] == pytest.approx((lo[0] + hi[0]) / 2, rel=1e-9)


def test_openapi_schema_documents_the_greeks_routes() -> None:
    schema = APIClient().get("/api/schema/", {"format": "json"}).json()
    for route in ("/api/v2/signals/realtime/greeks/{instrument_key}",
                  "/api/v2/signals/realtime/moneyness/{underlying}/greeks/{level}",
                  "/api/v2/signals/realtime/moneyness/{underlying}/atm-iv",
                  "/api/v2/signals/option-chain/{underlying}",
                  "/api/v2/signals/historical/greeks/{instrument_key}",
                  "/api/v2/signals/historical/moneyness/{underlying}/atm-iv"):
        assert route in schema["paths"], route
    params = {p["name"] for p in schema["paths"]["/api/v2/signals/historical/greeks/{instrument_key}"]["get"][
        "parameters"]}
    assert {"timeframe", "start_time", "end_time"} <= params
