"""Moneyness (docs/REFERENCE.md §4, issue 3): ATM / ITMn / OTMn / ITM / OTM / delta levels and ATM IV from the latest chain,
through the API, as a config computation and on the ``moneyness`` WebSocket channel; the instrument registry CSV."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.core.management import call_command

from signal_project.asgi import application
from signals.pipeline.batch import process_batch
from signals.pipeline.computations.moneyness import moneyness_cache_key
from tests.factories import create_config, tick
from tests.greeks_helpers import (
    EXPIRY,
    SPOT_PRICE,
    STRIKES,
    TICK_AT,
    VOLS,
    at,
    batch,
    chain_ticks,
    close_thread_connections,
    computation,
    fair,
    greeks_config,
    option_key,
    option_tick,
    records,
    spot_tick,
    vollib_bsm,
    years,
)

URL = "/api/v2/signals/realtime/moneyness/NSE@NIFTY@index"


def expected_iv(right: str, strike: float, price: float) -> float | None:
    try:
        return vollib_bsm(price, SPOT_PRICE, strike, years(at(TICK_AT), EXPIRY), 0.065, 0.0, right)["iv"]
    except Exception:
        return None


@pytest.fixture
def chain(db: Any, r: Any) -> dict[tuple[str, int], float]:
    create_config(greeks_config())
    bodies = chain_ticks()
    process_batch(batch(*bodies))
    return {(b["instrument_key"].split("@")[4], int(b["instrument_key"].split("@")[5])): b["ltp"]
            for b in bodies if "@options@" in b["instrument_key"]}


def level(client: Any, name: str, **params: Any) -> dict[str, Any]:
    response = client.get(f"{URL}/greeks/{name}", {"expiry_date": EXPIRY, **params})
    assert response.status_code == 200, response.json()
    return response.json()


def strikes_of(body: dict[str, Any]) -> tuple[list[float], list[float]]:
    return [c["strike"] for c in body["calls"]], [p["strike"] for p in body["puts"]]


def test_atm_itm_otm_levels_for_calls_and_puts(chain: Any, auth_client: Any) -> None:
    atm = level(auth_client, "ATM")
    assert atm["spot"] == SPOT_PRICE and atm["atm_strike"] == 24000 and strikes_of(atm) == ([24000], [24000])
    assert strikes_of(level(auth_client, "OTM1")) == ([24100], [23900])  # calls out of the money above, puts below
    assert strikes_of(level(auth_client, "ITM1")) == ([23900], [24100])
    assert strikes_of(level(auth_client, "otm2")) == ([24200], [23800])
    assert strikes_of(level(auth_client, "ITM")) == ([23800, 23900], [24100, 24200])
    assert strikes_of(level(auth_client, "OTM")) == ([24100, 24200], [23800, 23900])
    beyond = level(auth_client, "OTM3")
    assert strikes_of(beyond) == ([], []) and "no listed strike" in beyond["reason"]
    # strike_step counts in price steps instead of listed strikes: 24000 + 2 x 50 is not listed, + 2 x 100 is.
    assert strikes_of(level(auth_client, "OTM2", strike_step=50)) == ([24100], [23900])


def test_level_greeks_are_the_latest_greeks_and_averages(chain: dict, auth_client: Any) -> None:
    body = level(auth_client, "ITM")
    t = years(at(TICK_AT), EXPIRY)
    for view in body["calls"]:
        expected = vollib_bsm(chain[("call", view["strike"])], SPOT_PRICE, view["strike"], t, 0.065, 0.0, "call")
        assert view["iv"] == pytest.approx(expected["iv"], rel=1e-7)
        assert view["delta"] == pytest.approx(expected["delta"], rel=1e-7)
        assert view["instrument_key"] == option_key("call", view["strike"]) and view["status"] == "ok"
    assert body["averages"]["call"]["iv"] == pytest.approx(np.mean([c["iv"] for c in body["calls"]]))
    assert body["averages"]["call"]["count"] == 2
    # The broken put at 24100 has no IV: the put average is over what solved, and says how many.
    puts = {p["strike"]: p for p in body["puts"]}
    assert puts[24100]["iv"] is None and puts[24100]["status"] == "below_intrinsic"
    assert body["averages"]["put"]["iv"] == pytest.approx(puts[24200]["iv"])


def test_delta_level_picks_the_strike_with_the_nearest_abs_delta(chain: dict, auth_client: Any) -> None:
    t = years(at(TICK_AT), EXPIRY)
    for target in (25, 40, 10):
        body = level(auth_client, f"D{target}")
        deltas = {k: vollib_bsm(chain[("call", k)], SPOT_PRICE, k, t, 0.065, 0.0, "call")["delta"] for k in STRIKES}
        expected = min(STRIKES, key=lambda k: abs(abs(deltas[k]) - target / 100))
        assert strikes_of(body)[0] == [expected]
        assert abs(abs(body["calls"][0]["delta"]) - target / 100) <= min(
            abs(abs(d) - target / 100) for d in deltas.values()) + 1e-12


def test_atm_iv_interpolates_between_the_bracketing_strikes(chain: dict, auth_client: Any) -> None:
    body = auth_client.get(f"{URL}/atm-iv", {"expiry_date": EXPIRY}).json()
    c0, p0 = expected_iv("call", 24000, chain[("call", 24000)]), expected_iv("put", 24000, chain[("put", 24000)])
    c1, p1 = expected_iv("call", 24100, chain[("call", 24100)]), expected_iv("put", 24100, chain[("put", 24100)])
    assert p1 is None  # the broken put: at 24100 only the call solves
    w = (SPOT_PRICE - 24000) / 100
    assert body["iv"] == pytest.approx((c0 + p0) / 2 * (1 - w) + c1 * w, rel=1e-9)
    assert body["call_iv"] == pytest.approx(c0 * (1 - w) + c1 * w, rel=1e-9)
    # puts: the nearest solved strike above the spot is 24200
    p2 = expected_iv("put", 24200, chain[("put", 24200)])
    assert body["put_iv"] == pytest.approx(p0 + (SPOT_PRICE - 24000) / 200 * (p2 - p0), rel=1e-9)
    assert (body["atm_strike"], body["spot"]) == (24000, SPOT_PRICE)
    assert body["timestamp"] == "2025-06-20T04:00:01+00:00"


def test_option_chain_lists_every_strike_with_call_and_put(chain: dict, auth_client: Any) -> None:
    body = auth_client.get("/api/v2/signals/option-chain/NSE@NIFTY@index", {"expiry_date": "26-JUN-2025"}).json()
    assert [row["strike"] for row in body["strikes"]] == list(STRIKES)
    assert body["atm_strike"] == 24000 and body["spot"] == SPOT_PRICE
    row = body["strikes"][0]
    assert row["call"]["option_price"] == chain[("call", 23800)] and row["put"]["option_price"] == chain[("put", 23800)]
    assert row["call"]["delta"] > 0 > row["put"]["delta"]


@pytest.mark.django_db
def test_black76_chains_are_measured_against_the_future(r: Any, auth_client: Any) -> None:
    create_config(greeks_config(model="black76"))
    future = f"NSE@NIFTY@futures@{EXPIRY}"
    process_batch(batch(spot_tick(SPOT_PRICE, 0.1), tick(future, 24080.0, at=0.2),
                        *[option_tick(right, k, fair(right, k, VOLS[k]), TICK_AT) for k in STRIKES
                          for right in ("call", "put")]))
    body = level(auth_client, "ATM")
    assert body["model"] == "black76" and body["spot_key"] == future and body["spot"] == 24080.0
    assert body["atm_strike"] == 24100  # nearest the future, while the spot (24,020) is nearest 24,000


@pytest.mark.django_db
def test_moneyness_config_computes_levels_when_a_tick_arrives(r: Any) -> None:
    document = greeks_config("chain-moneyness")
    document["moneyness"] = {"underlying": "NSE@NIFTY@index", "expiry": EXPIRY, "levels": ["ATM", "OTM1", "D25"]}
    create_config(document)
    process_batch(batch(*chain_ticks()))
    found = [computation(rec, "moneyness") for rec in records(r, "chain-moneyness")]
    found = [c for c in found if c is not None]
    assert len(found) == 1  # a chain view: once per batch, on the batch's newest tick
    results = found[0]["results"]
    assert found[0]["success"] is True and set(results) == {"ATM", "OTM1", "D25", "atm_iv"}
    assert strikes_of(results["OTM1"]) == ([24100], [23900])
    # computed in the same batch as the Greeks it uses
    assert results["ATM"]["calls"][0]["iv"] is not None and results["atm_iv"]["iv"] is not None
    assert json.loads(r.get(moneyness_cache_key("NSE@NIFTY@index", EXPIRY, "OTM1")))["level"] == "OTM1"


@pytest.mark.django_db
def test_moneyness_without_expiry_uses_the_nearest_listed_expiry(r: Any) -> None:
    document = greeks_config("nearest")
    document["moneyness"] = {"underlying": "NSE@NIFTY@index", "levels": ["ATM"]}
    create_config(document)
    process_batch(batch(spot_tick(SPOT_PRICE, 0), option_tick("call", 24000, 150.0, 0.5, "2025-07-03"),
                        option_tick("call", 24000, 120.0, 0.6, EXPIRY), option_tick("call", 24000, 5.0, 0.7,
                                                                                       "2025-06-19")))
    results = next(c for rec in records(r, "nearest") if (c := computation(rec, "moneyness")))["results"]
    assert results["ATM"]["expiry_date"] == EXPIRY  # 2025-06-19 is before the tick's date


@pytest.mark.django_db(transaction=True)
async def test_moneyness_websocket_channel_pushes_levels(make_token: Any, r: Any) -> None:
    document = greeks_config("ws-moneyness")
    document["moneyness"] = {"underlying": "NSE@NIFTY@index", "expiry": EXPIRY, "levels": ["ATM"]}
    await sync_to_async(create_config)(document)
    ws = WebsocketCommunicator(application, f"/ws/v2/signals/?token={make_token()}")
    assert (await ws.connect())[0]
    await ws.receive_from()
    # OTM1 is not among the config's levels: subscribing registers the interest and it is pushed too.
    await ws.send_to(text_data=json.dumps({"type": "subscribe", "channel": "moneyness",
                                           "instrument_key": "nse@nifty@INDEX",
                                           "params": {"expiry_date": "26-jun-2025", "level": "otm1"}}))
    ack = json.loads(await ws.receive_from())
    assert ack["type"] == "subscribed" and ack["params"] == {"expiry_date": EXPIRY, "level": "OTM1"}
    snapshot = json.loads(await ws.receive_from())
    assert snapshot["type"] == "snapshot" and snapshot["data"]["calls"] == []  # nothing listed yet
    # ATM is the config's own level: its listeners are counted in the batch's chain read
    await ws.send_to(text_data=json.dumps({"type": "subscribe", "channel": "moneyness",
                                           "instrument_key": "NSE@NIFTY@index",
                                           "params": {"expiry_date": EXPIRY, "level": "ATM"}}))
    assert json.loads(await ws.receive_from())["type"] == "subscribed"
    assert json.loads(await ws.receive_from())["type"] == "snapshot"

    await sync_to_async(process_batch)(batch(*chain_ticks()))
    frames = [json.loads(await ws.receive_from(timeout=10)) for _ in range(2)]
    by_level = {frame["data"]["level"]: frame for frame in frames}
    assert set(by_level) == {"ATM", "OTM1"}
    frame = by_level["OTM1"]
    assert frame["type"] == "data" and frame["channel"] == "moneyness" and frame["seq"] == 1
    assert strikes_of(frame["data"]) == ([24100], [23900]) and frame["data"]["atm_iv"]["iv"] is not None
    assert by_level["ATM"]["data"]["strikes"] == [24000]

    await ws.send_to(text_data=json.dumps({"type": "subscribe", "channel": "moneyness",
                                           "instrument_key": "NSE@NIFTY@index", "params": {"level": "ATM"}}))
    error = json.loads(await ws.receive_from())
    assert error["type"] == "error" and error["code"] == "bad_params" and "expiry_date" in error["message"]
    await ws.send_to(text_data=json.dumps({"type": "subscribe", "channel": "moneyness",
                                           "instrument_key": "NSE@NIFTY@index",
                                           "params": {"expiry_date": EXPIRY, "level": "XTM"}}))
    assert json.loads(await ws.receive_from())["code"] == "bad_params"
    await ws.send_to(text_data=json.dumps({"type": "subscribe", "channel": "moneyness",
                                           "instrument_key": option_key("call", 24000),
                                           "params": {"expiry_date": EXPIRY}}))
    assert json.loads(await ws.receive_from())["code"] == "bad_instrument_key"
    await ws.disconnect()
    await close_thread_connections()


@pytest.mark.django_db
def test_instruments_load_from_csv_and_chains_use_them(tmp_path: Any, r: Any, auth_client: Any) -> None:
    from signals.models import InstrumentRecord

    path = tmp_path / "chain.csv"
    path.write_text("instrument_key,comment\n"
                    "NSE@NIFTY@equity_options@26-JUN-2025@CE@24300,far call\n"
                    "NSE@NIFTY@options@2025-06-26@put@24300,\n"
                    "NSE@NIFTY@options@2025-06-26@put@abc,bad strike\n")
    call_command("load_instruments", str(path))
    call_command("load_instruments", str(path))  # idempotent
    keys = set(InstrumentRecord.objects.values_list("key", flat=True))
    assert keys == {option_key("call", 24300), option_key("put", 24300)}
    rec = InstrumentRecord.objects.get(key=option_key("call", 24300))
    assert (rec.underlying_key, str(rec.expiry), rec.right, float(rec.strike)) == (
        "NSE@NIFTY@index", EXPIRY, "call", 24300.0)

    columns = tmp_path / "columns.csv"
    columns.write_text("exchange,symbol,product,expiry,option_type,strike\nNSE,NIFTY,options,2025-06-26,PE,24400\n")
    call_command("load_instruments", str(columns))
    assert InstrumentRecord.objects.filter(key=option_key("put", 24400)).exists()

    # The chain lists the CSV strikes even before any of them trades; their Greeks are null with a status.
    create_config(greeks_config())
    process_batch(batch(*chain_ticks(broken_put=None)))
    body = auth_client.get("/api/v2/signals/option-chain/NSE@NIFTY@index", {"expiry_date": EXPIRY}).json()
    rows = {row["strike"]: row for row in body["strikes"]}
    assert set(rows) == {*STRIKES, 24300, 24400}
    assert rows[24300]["call"]["status"] == "no_greeks" and rows[24300]["call"]["iv"] is None
    assert rows[24400]["call"] is None and rows[24400]["put"]["status"] == "no_greeks"
    assert math.isclose(rows[24000]["call"]["underlying_price"], SPOT_PRICE)


def test_csv_with_a_bad_line_is_refused_whole_with_strict(tmp_path: Any, db: Any) -> None:
    from django.core.management.base import CommandError

    from signals.models import InstrumentRecord

    path = tmp_path / "bad.csv"
    path.write_text("instrument_key\nNSE@NIFTY@options@2025-06-26@call@24000\nNSE@NIFTY@options@2025-06-26@XX@1\n")
    with pytest.raises(CommandError, match="line 3"):
        call_command("load_instruments", str(path), "--strict")
    assert InstrumentRecord.objects.count() == 0
