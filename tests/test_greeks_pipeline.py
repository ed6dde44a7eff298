"""Live Greeks in the tick pipeline (issue 3): every figure equals vollib's, or is null with the reason."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings

from feed import keys
from feed.simulator import NiftySession, encode
from signal_project.asgi import application
from signals.ingest.bridge import BridgeSettings, StreamBridge
from signals.pipeline.batch import process_batch
from tests.factories import create_config, fields, tick
from tests.greeks_helpers import (
    EXPIRY,
    SPOT,
    VIX,
    assert_matches,
    at,
    batch,
    close_thread_connections,
    computation,
    greeks_config,
    greeks_of,
    option_key,
    option_tick,
    records,
    spot_tick,
    vix_tick,
    vollib_black76,
    vollib_bsm,
    vollib_bsm_greeks,
    years,
)

SESSION_START = datetime(2025, 6, 20, 4, 0, tzinfo=UTC)  # 09:30 IST


def demo_session(strikes: int = 6) -> NiftySession:
    return NiftySession(start=SESSION_START, strikes_each_side=strikes, seed=11)


def check_chain_against_vollib(session_ticks: list[dict[str, Any]], results_of: Any) -> int:
    """Every option of the demo chain: solved rows equal vollib; rows vollib cannot solve are not 'ok' either."""
    from py_lets_be_rational.exceptions import BelowIntrinsicException

    spot = {t["ltt"]: t["ltp"] for t in session_ticks if t["instrument_key"] == SPOT}
    checked = 0
    for body in session_ticks:
        if "@options@" not in body["instrument_key"]:
            continue
        parts = body["instrument_key"].split("@")
        expiry, right, strike = parts[3], parts[4], float(parts[5])
        ts = datetime.fromisoformat(body["ltt"]).timestamp()
        t = years(ts, expiry)
        got = results_of(body["instrument_key"])["ltp"]
        assert got["underlying_price"] == spot[body["ltt"]] and got["option_price"] == body["ltp"]
        assert got["time_to_expiry"] == pytest.approx(t, rel=1e-12)
        try:
            expected = vollib_bsm(body["ltp"], spot[body["ltt"]], strike, t, 0.065, 0.0, right)
        except BelowIntrinsicException:
            assert got["status"] == "below_intrinsic" and got["iv"] is None and got["sigma_source"] == "indvix"
            continue
        assert got["status"] == "ok" and got["sigma_source"] == "implied", got
        assert_matches(got, expected)
        checked += 1
    return checked


@pytest.mark.django_db
def test_demo_chain_greeks_equal_vollib_in_every_sink(r: Any, auth_client: Any) -> None:
    from signals.models import GreeksRecord

    config = create_config(greeks_config())
    session = demo_session()
    bodies = [t for _, t in session.round_ticks()]
    session.advance(1.0)
    bodies += [t for _, t in session.round_ticks()]
    report = process_batch(batch(*bodies))
    options = [b for b in bodies if "@options@" in b["instrument_key"]]
    assert report.records == len(options)  # spot, VIX and futures get no Greeks record

    latest_round = {b["instrument_key"]: b for b in bodies}
    assert check_chain_against_vollib(list(latest_round.values()), lambda key: greeks_of(r, key)) > 30

    # The typed table holds one row per option tick with the same numbers.
    rows = {(g.instrument_key, g.time.timestamp()): g for g in GreeksRecord.objects.filter(config_id=config.id)}
    assert len(rows) == len(options)
    key = option_key("call", 24000)
    last = latest_round[key]
    row = rows[(key, datetime.fromisoformat(last["ltt"]).timestamp())]
    results = greeks_of(r, key)["ltp"]
    assert (row.iv, row.delta, row.theta, row.vega, row.status, row.sigma_source) == (
        results["iv"], results["delta"], results["theta"], results["vega"], "ok", "implied")

    # The realtime API answers the newest tick's Greeks, equal to vollib's.
    body = auth_client.get(f"/api/v2/signals/realtime/greeks/{key}").json()
    t = years(datetime.fromisoformat(last["ltt"]).timestamp(), EXPIRY)
    spot = latest_round[SPOT]["ltp"]
    assert body["timestamp"] == datetime.fromisoformat(last["ltt"]).astimezone(UTC).isoformat()
    assert body["underlying_price"] == spot and body["option_price"] == last["ltp"]
    assert body["sigma_source"] == "implied" and body["status"] == "ok"
    assert_matches(body["greeks"], vollib_bsm(last["ltp"], spot, 24000, t, 0.065, 0.0, "call"))


def test_spot_ticks_get_no_greeks_and_units_are_vollibs(r: Any, db: Any) -> None:
    create_config(greeks_config(pattern="NSE@NIFTY@*"))
    process_batch(batch(spot_tick(24000, 0), option_tick("put", 24100, 180.0, 0.5)))
    recs = records(r)
    assert [rec["instrument_key"] for rec in recs] == [option_key("put", 24100)]
    got = greeks_of(r, option_key("put", 24100))["ltp"]
    t = years(at(0.5), EXPIRY)
    expected = vollib_bsm(180.0, 24000, 24100, t, 0.065, 0.0, "put")
    assert_matches(got, expected)
    # theta per calendar day, vega and rho per percentage point: the same magnitudes as vollib's, no rescaling.
    assert -30 < got["theta"] < 0 and 5 < got["vega"] < 20 and got["rho"] < 0


@pytest.mark.django_db
def test_stale_underlying_is_flagged(r: Any, settings: Any) -> None:
    from signals.models import GreeksRecord

    settings.SIGNAL_UNDERLYING_STALENESS_S = 2.0
    create_config(greeks_config())
    process_batch(batch(spot_tick(24000, 0), option_tick("call", 24000, 190.0, 1.5),
                        option_tick("call", 24050, 165.0, 5.0)))
    fresh = greeks_of(r, option_key("call", 24000))["ltp"]
    stale = greeks_of(r, option_key("call", 24050))["ltp"]
    assert fresh["stale_underlying"] is False and fresh["status"] == "ok"
    assert stale["stale_underlying"] is True and stale["status"] == "ok"
    # still priced against the last underlying value at or before its time, and says so
    assert stale["underlying_price"] == 24000
    assert_matches(stale, vollib_bsm(165.0, 24000, 24050, years(at(5), EXPIRY), 0.065, 0.0, "call"))
    statuses = dict(GreeksRecord.objects.values_list("instrument_key", "status"))
    assert statuses == {option_key("call", 24000): "ok", option_key("call", 24050): "ok|stale_underlying"}


@pytest.mark.django_db
def test_underlying_after_the_option_tick_is_not_used(r: Any) -> None:
    create_config(greeks_config())
    # The spot tick at t=3 is in the same batch but later than the option tick: it must not be used.
    process_batch(batch(option_tick("call", 24000, 190.0, 1.0), spot_tick(24100, 3.0)))
    got = greeks_of(r, option_key("call", 24000))["ltp"]
    assert got["status"] == "no_underlying" and got["iv"] is None and got["delta"] is None
    assert "no underlying value" in got["reason"]
    process_batch(batch(spot_tick(24000, 0.0), option_tick("call", 24000, 190.0, 1.0), start=10))
    assert greeks_of(r, option_key("call", 24000))["ltp"]["underlying_price"] == 24000


@pytest.mark.django_db
def test_below_intrinsic_uses_indvix_when_allowed_and_is_null_otherwise(r: Any) -> None:
    from signals.models import GreeksRecord

    create_config(greeks_config("with-vix", use_indvix=True))
    create_config(greeks_config("without-vix", use_indvix=False))
    key = option_key("call", 23000)
    # intrinsic value is 1000; 900 is below it (a bad print): no volatility fits.
    process_batch(batch(vix_tick(15.5, 0), stream="tick_stream:NSE@INDVIX"))
    process_batch(batch(spot_tick(24000, 0.5), option_tick("call", 23000, 900.0, 1.0)))

    with_vix = greeks_of(r, key, "with-vix")["ltp"]
    t = years(at(1.0), EXPIRY)
    assert with_vix["status"] == "below_intrinsic" and with_vix["iv"] is None
    assert with_vix["sigma_source"] == "indvix" and with_vix["sigma"] == pytest.approx(0.155, rel=1e-15)
    assert_matches(with_vix, vollib_bsm_greeks(24000, 23000, t, 0.065, 0.0, 0.155, "call"))
    assert "INDVIX" in with_vix["reason"]

    without = greeks_of(r, key, "without-vix")["ltp"]
    assert without["status"] == "below_intrinsic" and without["sigma_source"] is None
    assert all(without[name] is None for name in ("iv", "delta", "gamma", "theta", "vega", "rho", "sigma", "price"))
    assert "disabled" in without["reason"]

    rows = {cfg: (iv, delta, source) for cfg, iv, delta, source in
            GreeksRecord.objects.values_list("config_id", "iv", "delta", "sigma_source")}
    assert sorted((v[0], v[1] is None, v[2]) for v in rows.values()) == [(None, False, "indvix"), (None, True, "")]


@pytest.mark.django_db
def test_below_intrinsic_without_an_indvix_value_is_null_with_the_reason(r: Any) -> None:
    create_config(greeks_config())
    process_batch(batch(spot_tick(24000, 0.5), option_tick("put", 25000, 950.0, 1.0)))
    got = greeks_of(r, option_key("put", 25000))["ltp"]
    assert got["status"] == "below_intrinsic" and got["delta"] is None and got["sigma_source"] is None
    assert "no INDVIX value" in got["reason"]


@pytest.mark.django_db
def test_expired_option_reports_intrinsic_value_and_no_iv(r: Any) -> None:
    create_config(greeks_config())
    key = option_key("put", 24100, "2025-06-19")  # expired the day before the tick
    process_batch(batch(spot_tick(24000, 0), tick_body := option_tick("put", 24100, 101.0, 1.0,
                                                                      expiry="2025-06-19")))
    got = greeks_of(r, key)["ltp"]
    assert tick_body["instrument_key"] == key
    assert got["status"] == "expired" and got["iv"] is None and got["sigma_source"] is None
    assert got["price"] == pytest.approx(100.0) and got["time_to_expiry"] == 0.0
    assert got["delta"] == -1.0 and got["gamma"] == 0.0


@pytest.mark.django_db
def test_expiry_is_1530_ist_of_the_expiry_date_in_tick_time(r: Any) -> None:
    create_config(greeks_config())
    # 2025-06-20 15:29 IST and 15:31 IST for an option expiring 2025-06-20.
    before, after = 5 * 3600 + 59 * 60, 6 * 3600 + 1 * 60
    process_batch(batch(spot_tick(24000, before - 1), option_tick("call", 23900, 100.5, before, "2025-06-20"),
                        spot_tick(24000, after - 1), option_tick("call", 24000, 0.5, after, "2025-06-20")))
    live = greeks_of(r, option_key("call", 23900, "2025-06-20"))["ltp"]
    assert live["time_to_expiry"] == pytest.approx(60 / (365 * 86400), rel=1e-9) and live["status"] != "expired"
    assert greeks_of(r, option_key("call", 24000, "2025-06-20"))["ltp"]["status"] == "expired"


@pytest.mark.django_db
def test_ohlc_fields_are_solved_against_the_underlyings_matching_ohlc(r: Any) -> None:
    create_config(greeks_config(price_fields=["ltp", "open", "high", "low", "close"]))
    spot = spot_tick(24010, 0, open=23950.0, high=24060.0, low=23900.0, close=24010.0)
    option = option_tick("call", 24000, 200.0, 0.5, open=170.0, high=230.0, low=150.0, close=200.0)
    no_open = option_tick("put", 24000, 180.0, 0.5)
    process_batch(batch(spot, option, no_open))
    got = greeks_of(r, option_key("call", 24000))
    t = years(at(0.5), EXPIRY)
    for field, under in (("ltp", 24010), ("open", 23950), ("high", 24060), ("low", 23900), ("close", 24010)):
        assert got[field]["underlying_price"] == under
        assert_matches(got[field], vollib_bsm(option[field] if field != "ltp" else 200.0, under, 24000, t,
                                              0.065, 0.0, "call"))
    missing = greeks_of(r, option_key("put", 24000))
    assert missing["ltp"]["status"] == "ok"
    assert missing["open"]["status"] == "no_price" and missing["open"]["iv"] is None


@pytest.mark.django_db
def test_black76_prices_against_the_same_expiry_future(r: Any) -> None:
    create_config(greeks_config(model="black76"))
    future = f"NSE@NIFTY@futures@{EXPIRY}"
    from tests.factories import tick

    process_batch(batch(spot_tick(24000, 0), tick(future, 24080.0, at=0.2), option_tick("call", 24100, 150.0, 0.5)))
    got = greeks_of(r, option_key("call", 24100))["ltp"]
    assert got["underlying_price"] == 24080.0
    assert_matches(got, vollib_black76(150.0, 24080.0, 24100, years(at(0.5), EXPIRY), 0.065, "call"))


@pytest.mark.django_db
def test_only_the_configured_greeks_are_reported(r: Any) -> None:
    from signals.models import GreeksRecord

    create_config(greeks_config(calculate=["iv", "delta"]))
    process_batch(batch(spot_tick(24000, 0), option_tick("call", 24000, 190.0, 0.5)))
    got = greeks_of(r, option_key("call", 24000))["ltp"]
    assert {"iv", "delta"} <= set(got) and not {"gamma", "theta", "vega", "rho"} & set(got)
    row = GreeksRecord.objects.get()
    assert row.iv == got["iv"] and row.delta == got["delta"] and row.gamma is None and row.vega is None
    raw = r.xrange(keys.output_stream("NSE@NIFTY"))[0][1][b"data"]
    assert b"NaN" not in raw


@pytest.mark.django_db
def test_an_older_redelivered_tick_does_not_replace_the_latest_greeks(r: Any, auth_client: Any) -> None:
    create_config(greeks_config())
    key = option_key("call", 24000)
    process_batch(batch(spot_tick(24000, 0), option_tick("call", 24000, 190.0, 5.0)))
    process_batch(batch(option_tick("call", 24000, 170.0, 2.0), start=50))
    body = auth_client.get(f"/api/v2/signals/realtime/greeks/{key}").json()
    assert body["option_price"] == 190.0


async def _receive_type(ws: WebsocketCommunicator, kind: str, timeout: float = 20) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        frame = json.loads(await ws.receive_from(timeout=max(0.1, deadline - loop.time())))
        if frame["type"] == kind:
            return frame


@pytest.mark.django_db(transaction=True)
async def test_demo_feed_end_to_end_through_bridge_worker_api_and_websocket(
        start_worker: Any, make_token: Any, auth_client: Any, r: Any) -> None:
    """The simulator's chain XADDed to the streams: a real bridge and Celery worker produce Greeks equal to
    vollib's on the output stream and the API, and the greeks WebSocket channel gets a data frame."""
    await sync_to_async(create_config)(greeks_config("nifty-chain-greeks"))
    await sync_to_async(start_worker)("greeks-e2e")
    watched = option_key("put", 24000)

    ws = WebsocketCommunicator(application, f"/ws/v2/signals/?token={make_token()}")
    assert (await ws.connect())[0]
    assert json.loads(await ws.receive_from())["type"] == "authenticated"
    await ws.send_to(text_data=json.dumps({"type": "subscribe", "channel": "greeks", "instrument_key": watched}))
    ack = json.loads(await ws.receive_from())
    assert ack["type"] == "subscribed" and ack["channel"] == "greeks"
    snapshot = json.loads(await ws.receive_from())
    assert snapshot["type"] == "snapshot" and snapshot["data"] is None

    session = demo_session(strikes=4)
    sent = session.round_ticks()
    vix = [(s, t) for s, t in sent if s == "tick_stream:NSE@INDVIX"]
    rest = [(s, t) for s, t in sent if s != "tick_stream:NSE@INDVIX"]
    bridge = StreamBridge(r, replace(BridgeSettings.from_django(), queue_routes={"NSE@NIFTY": "greeks-e2e",
                                                                                 "NSE@INDVIX": "greeks-e2e"}),
                          consumer="greeks-e2e")
    for group in (vix, rest):  # INDVIX first, as the feed would have it before the options
        for stream, body in group:
            r.xadd(stream, encode(body))
        await sync_to_async(bridge.discover)()
        assert await sync_to_async(bridge.handle)(await sync_to_async(bridge.read)()) == len(group)

    options = [t for _, t in rest if "@options@" in t["instrument_key"]]

    def arrived() -> Any:
        found = records(r, "nifty-chain-greeks")
        return len(found) == len(options) and found

    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while not await sync_to_async(arrived)():
        assert loop.time() < deadline, "greeks did not arrive on the output stream"
        await asyncio.sleep(0.05)
    by_key = {rec["instrument_key"]: computation(rec)["results"] for rec in records(r, "nifty-chain-greeks")}
    assert check_chain_against_vollib([t for _, t in sent], lambda key: by_key[key]) >= 10

    frame = await _receive_type(ws, "data")
    assert frame["channel"] == "greeks" and frame["instrument_key"] == watched and frame["seq"] == 1
    assert frame["data"]["greeks"] == {name: by_key[watched]["ltp"][name]
                                       for name in ("iv", "delta", "gamma", "theta", "vega", "rho")}
    body = (await sync_to_async(auth_client.get)(f"/api/v2/signals/realtime/greeks/{watched}")).json()
    assert body["greeks"] == frame["data"]["greeks"] and body["status"] == "ok"
    await ws.disconnect()
    await close_thread_connections()


def _out_of_order_bridge(r: Any) -> Any:
    return StreamBridge(r, BridgeSettings.from_django(), consumer="c",
                        send_task=lambda ticks, queue, ticket: process_batch(ticks), queue_lengths=lambda qs: [0] * len(qs))


def _step_until_sent(bridge: Any, r: Any, option: str, seconds: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < seconds and not r.exists(keys.latest_result("greeks", option)):
        bridge.step()
    return time.monotonic() - started


@pytest.mark.django_db
def test_an_option_tick_that_arrives_before_its_underlyings_waits_for_it_and_is_not_stale(r: Any) -> None:
    create_config(greeks_config())
    option = option_key("call", 24000)
    r.xadd("tick_stream:NSE@NIFTY", fields(tick(SPOT, 23900, at=0)))  # a minute old: stale at the option's time
    r.xadd("tick_stream:NSE@NIFTY-options", fields(tick(option, 120, at=60)))
    bridge = _out_of_order_bridge(r)
    bridge.discover()
    bridge.step()  # reads both ticks; the option (and the spot's batch with it) waits
    assert not r.exists(keys.latest_result("greeks", option))
    time.sleep(0.05)
    r.xadd("tick_stream:NSE@NIFTY", fields(tick(SPOT, 24010, at=59.5)))  # 50 ms later, on another stream
    _step_until_sent(bridge, r, option, 5)
    greeks = greeks_of(r, option)["ltp"]
    assert greeks["underlying_price"] == 24010 and greeks["stale_underlying"] is False


@pytest.mark.django_db
def test_an_option_tick_whose_underlying_does_not_come_is_priced_after_the_wait_and_flagged_stale(r: Any) -> None:
    create_config(greeks_config())
    option = option_key("call", 24000)
    r.xadd("tick_stream:NSE@NIFTY", fields(tick(SPOT, 23900, at=0)))
    r.xadd("tick_stream:NSE@NIFTY-options", fields(tick(option, 120, at=60)))
    bridge = _out_of_order_bridge(r)
    bridge.discover()
    waited = _step_until_sent(bridge, r, option, 5)
    greeks = greeks_of(r, option)["ltp"]
    assert greeks["underlying_price"] == 23900 and greeks["stale_underlying"] is True
    assert waited >= settings.SIGNAL_UNDERLYING_WAIT_MS / 1000


@pytest.mark.django_db
def test_an_option_priced_before_the_indvix_batch_it_waited_for_still_uses_that_indvix(r: Any) -> None:
    create_config(greeks_config())
    option = option_key("call", 23000)
    sent: list[list[dict[str, Any]]] = []
    bridge = StreamBridge(r, BridgeSettings.from_django(), consumer="c", queue_lengths=lambda qs: [0] * len(qs),
                          send_task=lambda ticks, queue, ticket: sent.append(ticks))
    r.xadd("tick_stream:NSE@NIFTY", fields(tick(SPOT, 24000, at=60)))
    r.xadd("tick_stream:NSE@INDVIX", fields(tick(VIX, 13.0, at=0)))  # stale by the option's time
    bridge.discover()
    bridge.step()
    for batch_ticks in sent:
        process_batch(batch_ticks)
    sent.clear()
    r.xadd("tick_stream:NSE@NIFTY-options", fields(tick(option, 500, at=60.2)))  # below intrinsic: INDVIX prices it
    bridge.discover()
    bridge.step()
    assert sent == []  # waits for a fresh INDVIX
    time.sleep(0.05)
    r.xadd("tick_stream:NSE@INDVIX", fields(tick(VIX, 20.0, at=60.1)))
    started = time.monotonic()
    while len(sent) < 2 and time.monotonic() - started < 5:
        bridge.step()
    options_batch = next(b for b in sent if any(t["instrument_key"] == option for t in b))
    process_batch(options_batch)  # before the INDVIX batch: another worker has not finished it yet
    greeks = greeks_of(r, option)["ltp"]
    assert greeks["sigma_source"] == "indvix" and greeks["sigma"] == pytest.approx(0.20)
