"""Technical indicators in the live pipeline: values equal TA-Lib's own functions on the same bars (after warm-up),
one evaluation per instrument and batch, every sink of docs/REFERENCE.md §3.5, the latest-indicators cache, the realtime API and
the ``indicators`` WebSocket channel."""

from __future__ import annotations

import json
from datetime import date
from typing import Any

import numpy as np
import pandas as pd
import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.db import connections

from feed import keys
from signal_project.asgi import application
from signals.pipeline.batch import process_batch
from tests.bars_helpers import (
    FUTURE,
    SPECS,
    make_ticks,
    normalised_batch,
    reference_bars,
    session_days,
    store,
    talib_columns,
)
from tests.factories import create_config

API = "/api/v2/signals"


def config(name: str = "nifty-fut-ind", frequency: str = "every_tick", specs: list[dict[str, Any]] | None = None,
           interval: str = "5m") -> Any:
    return create_config({"name": name, "instrument_key": "NSE@NIFTY@futures@*", "interval": interval,
                          "frequency": frequency, "technical_indicators": specs or SPECS})


def indicator_result(record: dict[str, Any]) -> dict[str, Any]:
    (found,) = [c for c in record["computations"] if c["computation_type"] == "technical_indicators"]
    assert found["success"] is True and found["error"] is None
    return found["results"]


def records(r: Any) -> list[dict[str, Any]]:
    return [json.loads(x) for x in r.lrange(keys.output_list(FUTURE), 0, -1)]


@pytest.mark.django_db
def test_live_indicators_equal_talib_on_the_same_bars(r: Any, auth_client: Any) -> None:
    days = session_days(date(2025, 6, 2), 11)
    ticks = make_ticks(days, seed=41, mean_gap_s=25)
    history = [t for t in ticks if t["ts"] < pd.Timestamp("2025-06-16T11:00:00+05:30").timestamp()]
    live = ticks[len(history):len(history) + 120]
    store(history)
    cfg = config()
    from signals.models import ComputedSignal

    for n, (lo, hi) in enumerate(((0, 7), (7, 50), (50, 120))):
        batch = normalised_batch(live[lo:hi], first_id=1_000_000 + lo)
        report = process_batch(batch)
        assert report.records == 1  # once per instrument and batch, on its newest tick
        newest = records(r)[0]
        assert newest["tick_data"]["ts"] == live[hi - 1]["ts"] and newest["config_id"] == cfg.id
        result = indicator_result(newest)
        upto = [t for t in ticks if t["ts"] <= live[hi - 1]["ts"]]
        bars = reference_bars(upto, "5m")
        warmup = result["warmup_bars"]
        assert warmup == 680 and result["bars"] == warmup + 1 < len(bars)
        assert result["bar_time"] == bars["time"].iloc[-1].isoformat()  # the open bar, as of the newest tick
        expected = talib_columns(bars.tail(warmup + 1).reset_index(drop=True))
        full = talib_columns(bars)
        for key, column in expected.items():
            assert result["values"][key] == pytest.approx(column[-1], rel=1e-12, abs=1e-12), key
            assert result["values"][key] == pytest.approx(full[key][-1], rel=1e-7, abs=1e-7), key
        assert ComputedSignal.objects.filter(computation_type="technical_indicators").count() == n + 1

    # the latest-indicators cache, per config and per instrument+timeframe
    per_config = json.loads(r.get(keys.latest_result("indicators", FUTURE, f"5m:{cfg.id}")))
    shared = json.loads(r.get(keys.latest_result("indicators", FUTURE, "5m")))
    assert per_config == shared and per_config["values"] == result["values"]
    assert r.ttl(keys.latest_result("indicators", FUTURE, "5m")) > 0
    body = auth_client.get(f"{API}/realtime/indicators/{FUTURE}?timeframe=5minute").json()
    assert body["values"] == result["values"] and body["timeframe"] == "5m"
    assert body["configs"][0]["config_id"] == cfg.id and body["bar_time"] == result["bar_time"]
    assert auth_client.get(f"{API}/realtime/indicators/{FUTURE}?timeframe=1h").status_code == 404
    stream = r.xrange(keys.output_stream("NSE@NIFTY"))
    assert len(stream) == 3 and json.loads(stream[-1][1][b"data"])["computations"][0]["results"] == result


@pytest.mark.django_db
def test_every_interval_config_evaluates_the_bar_that_closed(r: Any) -> None:
    ticks = make_ticks([date(2025, 6, 19)], seed=12, mean_gap_s=15, pre_open=False)
    store(ticks[:-300])
    config(frequency="every_interval", specs=[{"name": "sma", "parameters": {"length": 3}, "output_key": "s3"}])
    process_batch(normalised_batch(ticks[-300:], first_id=5_000_000))
    found = records(r)
    assert found, "bar closes in the batch produce runs"
    bars = reference_bars(ticks, "5m")
    for record in found:
        result = indicator_result(record)
        tick_time = pd.Timestamp(record["timestamp"])
        closed = bars[bars["time"] <= tick_time - pd.Timedelta(minutes=5)].reset_index(drop=True)
        assert result["bar_time"] == closed["time"].iloc[-1].isoformat()  # the bar that just closed
        assert result["values"]["s3"] == pytest.approx(closed["close"].tail(3).mean(), rel=1e-12)


@pytest.mark.django_db
def test_configs_on_one_instrument_share_the_realtime_answer(r: Any, auth_client: Any) -> None:
    ticks = make_ticks([date(2025, 6, 19)], seed=13, pre_open=False)
    store(ticks[:-20])
    first = config("ind-a", specs=[{"name": "sma", "parameters": {"length": 3}, "output_key": "fast"}])
    second = config("ind-b", specs=[{"name": "ema", "parameters": {"length": 5}, "output_key": "slow"}])
    process_batch(normalised_batch(ticks[-20:], first_id=9_000_000))
    assert {k.decode() for k in r.keys("signal:latest:indicators:*")} == {
        keys.latest_result("indicators", FUTURE, "5m"), keys.latest_result("indicators", FUTURE, f"5m:{first.id}"),
        keys.latest_result("indicators", FUTURE, f"5m:{second.id}")}
    body = auth_client.get(f"{API}/realtime/indicators/{FUTURE}?timeframe=5m").json()
    closes = reference_bars(ticks, "5m")["close"].to_numpy()
    assert body["values"]["fast"] == pytest.approx(closes[-3:].mean(), rel=1e-12)
    assert np.isfinite(body["values"]["slow"])
    assert {c["config_id"] for c in body["configs"]} == {first.id, second.id}


@pytest.mark.django_db(transaction=True)
async def test_indicators_channel_delivers_an_update_after_ticks(make_token: Any, r: Any) -> None:
    ticks = make_ticks([date(2025, 6, 19)], seed=14, pre_open=False)
    await sync_to_async(store)(ticks[:-5])
    cfg = await sync_to_async(config)("ws-ind", "every_tick",
                                      [{"name": "rsi", "parameters": {"length": 14}, "output_key": "rsi"}])
    ws = WebsocketCommunicator(application, f"/ws/v2/signals/?token={make_token()}")
    assert (await ws.connect())[0]
    assert json.loads(await ws.receive_from())["type"] == "authenticated"
    await ws.send_to(text_data=json.dumps({"type": "subscribe", "channel": "indicators", "instrument_key": FUTURE,
                                           "params": {"timeframe": "bad"}}))
    assert json.loads(await ws.receive_from())["code"] == "bad_params"
    await ws.send_to(text_data=json.dumps({"type": "subscribe", "channel": "indicators", "instrument_key": FUTURE,
                                           "params": {"timeframe": "5minute"}}))
    ack = json.loads(await ws.receive_from())
    assert ack["type"] == "subscribed" and ack["subscription_key"] == keys.topic_group(
        "indicators", FUTURE, {"timeframe": "5m"})
    assert json.loads(await ws.receive_from())["data"] is None  # snapshot: nothing computed yet

    await sync_to_async(process_batch)(normalised_batch(ticks[-5:], first_id=7_000_000))
    frame = json.loads(await ws.receive_from(timeout=10))
    assert (frame["type"], frame["channel"], frame["instrument_key"], frame["seq"]) == (
        "data", "indicators", FUTURE, 1)
    data = frame["data"]
    assert data["config_id"] == cfg.id and data["timeframe"] == "5m" and set(data["values"]) == {"rsi"}
    assert 0 < data["values"]["rsi"] < 100 and frame["timestamp"] == data["timestamp"]
    await ws.send_to(text_data=json.dumps({"type": "snapshot", "subscription_key": ack["subscription_key"]}))
    assert json.loads(await ws.receive_from())["data"] == data
    await ws.disconnect()
    await sync_to_async(connections.close_all)()
