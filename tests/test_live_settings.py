"""Settings and promises that used to do nothing (issue 18): put_call_ratio's live chain, and
SIGNAL_REPUBLISH_PROCESSED re-adding processed ticks to their stream with state P (SPEC §3.5)."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest

from configs.frequency import parse_frequency
from signals.ingest.bridge import BridgeSettings, StreamBridge
from signals.pipeline.batch import process_batch
from signals.schedule.timed import run_schedule
from tests.factories import create_config, fields, normalised, tick
from tests.greeks_helpers import batch, option_key, records, spot_tick
from tests.support import wait_for

STREAM = "tick_stream:NSE@NIFTY"


def pcr_config(name: str = "pcr", **parameters: Any) -> dict[str, Any]:
    return {"name": name, "instrument_key": "NSE@NIFTY@index", "interval": "1m", "frequency": "every_tick",
            "internal_functions": [{"name": "put_call_ratio", "parameters": parameters}]}


def pcr_of(r: Any, name: str = "pcr") -> dict[str, Any]:
    return [rec for rec in records(r, name) if rec["instrument_key"] == "NSE@NIFTY@index"][-1][
        "computations"][0]["results"]


@pytest.mark.django_db
def test_put_call_ratio_reads_the_underlyings_live_chain(r: Any) -> None:
    create_config(pcr_config())
    create_config(pcr_config("pcr-july", expiry="2025-07-03"))
    process_batch(batch(
        tick(option_key("call", 24000), 190.0, at=1, oi=100, volume=10),
        tick(option_key("put", 24000), 160.0, at=1, oi=150, volume=30),
        tick(option_key("put", 24100, "2025-06-19"), 5.0, at=1, oi=9000, volume=900),  # expired the day before
        tick("NSE@BANKNIFTY@options@2025-06-26@put@50000", 90.0, at=1, oi=7000, volume=70),  # another underlying
        spot_tick(24000, 2)))
    first = pcr_of(r)
    assert (first["oi_pcr"], first["volume_pcr"], first["contracts"]) == (1.5, 3.0, 2)
    assert (first["call_oi"], first["put_oi"]) == (100, 150)
    assert pcr_of(r, "pcr-july")["contracts"] == 0 and pcr_of(r, "pcr-july")["oi_pcr"] is None
    # a later batch sees the chain as its ticks left it
    process_batch(batch(tick(option_key("call", 24000), 180.0, at=3, oi=300, volume=20), spot_tick(24001, 4),
                        start=10))
    assert pcr_of(r)["oi_pcr"] == 0.5 and pcr_of(r)["volume_pcr"] == 1.5


@pytest.mark.django_db
def test_put_call_ratio_in_a_time_driven_run_and_an_explicit_chain_wins(r: Any) -> None:
    create_config({**pcr_config("pcr-timed"), "frequency": "every_minute"})
    create_config(pcr_config("pcr-given", chain=[{"right": "CE", "oi": 10}, {"right": "PE", "oi": 40}]))
    process_batch(batch(tick(option_key("call", 24000), 190.0, at=1, oi=100, volume=10),
                        tick(option_key("put", 24000), 160.0, at=1, oi=250, volume=5), spot_tick(24000, 2)))
    assert pcr_of(r, "pcr-given")["oi_pcr"] == 4.0  # the config's own chain, not the live one
    run_schedule(parse_frequency("every_minute").schedule_key)
    assert pcr_of(r, "pcr-timed")["oi_pcr"] == 2.5


@pytest.mark.django_db
def test_processed_ticks_are_not_republished_by_default(r: Any) -> None:
    ids = [r.xadd(STREAM, fields(spot_tick(24000 + i, i))).decode() for i in range(2)]
    process_batch([normalised(spot_tick(24000 + i, i), f"{STREAM}/{entry}") for i, entry in enumerate(ids)])
    assert r.xlen(STREAM) == 2


@pytest.mark.django_db(transaction=True)
def test_republish_processed_adds_each_tick_back_with_state_p_and_the_bridge_skips_it(
        start_worker: Any, r: Any) -> None:
    start_worker("republish", extra_env={"SIGNAL_REPUBLISH_PROCESSED": "true"})
    sent = [spot_tick(24000, 0), tick(option_key("call", 24000), 190.0, at=1, oi=5)]
    ids = [r.xadd(STREAM, fields(body)).decode() for body in sent]
    bridge = StreamBridge(r, replace(BridgeSettings.from_django(), queue_routes={"NSE@NIFTY": "republish"}),
                          consumer="republish")
    bridge.discover()
    assert bridge.handle(bridge.read()) == 2
    entries = wait_for(lambda: len(r.xrange(STREAM)) == 4 and r.xrange(STREAM), timeout=60)
    republished = [json.loads(entry[b"data"]) for _, entry in entries[2:]]
    assert [(e["instrument_key"], e["ltp"], e["state"]) for e in republished] == [
        ("NSE@NIFTY@index", 24000, "P"), (option_key("call", 24000), 190.0, "P")]
    assert [e["source_id"] for e in republished] == [f"{STREAM}/{i}" for i in ids]
    assert republished[1]["oi"] == 5 and republished[1]["timestamp"] == "2025-06-20T04:00:01+00:00"
    assert bridge.handle(bridge.read()) == 0  # processed: acknowledged and skipped, never processed again
    assert r.xpending(STREAM, "signal_service")["pending"] == 0 and r.xlen(STREAM) == 4
