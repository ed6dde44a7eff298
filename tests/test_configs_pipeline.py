"""Configs in the tick pipeline: every_interval by tick time, internal functions, cache invalidation on change,
last-run stamps, and registry reloads."""

from __future__ import annotations

import json
from typing import Any

import pytest

from configs import changes, runs
from configs.registry import registry
from feed import keys
from signals.pipeline.batch import process_batch
from tests.factories import create_config, normalised, price_config, tick

pytestmark = pytest.mark.django_db
SPOT = "NSE@NIFTY@index"
# Seconds after 09:30:00 IST: bars of 1m close at +60, +120, +180; of 2m (aligned to 09:15) at +60 and +180.
TIMES = [0, 20, 40, 65, 90, 130, 180, 239]


@pytest.fixture(autouse=True)
def fresh_stamps() -> None:
    runs.reset()


def replay(times: list[float], first_id: int = 1) -> list[dict[str, Any]]:
    return [normalised(tick(SPOT, 24000 + t, at=t), f"tick_stream:NSE@NIFTY/{first_id + i}-0")
            for i, t in enumerate(times)]


def fired(r: Any, config_name: str) -> list[str]:
    found = [json.loads(x) for x in r.lrange(keys.output_list(SPOT), 0, -1)]
    return sorted(rec["timestamp"][11:19] for rec in found if rec["config_name"] == config_name)


def test_every_interval_fires_once_per_bar_close_by_tick_time(r: Any) -> None:
    create_config(price_config("per-minute", frequency="every_interval", interval="1m"))
    create_config(price_config("per-2m", frequency="every_interval", interval="2m"))
    create_config(price_config("per-5m", frequency="every_interval", interval="5m"))
    create_config(price_config("per-tick", frequency="every_tick"))
    report = process_batch(replay(TIMES))
    # The first tick after each close runs the config (04:01:05 is 09:31:05 IST).
    assert fired(r, "per-minute") == ["04:01:05", "04:02:10", "04:03:00"]
    assert fired(r, "per-2m") == ["04:01:05", "04:03:00"]
    assert fired(r, "per-5m") == []
    assert len(fired(r, "per-tick")) == len(TIMES)
    assert report.records == len(TIMES) + 3 + 2
    first = next(json.loads(x) for x in r.lrange(keys.output_list(SPOT), 0, -1)
                 if json.loads(x)["config_name"] == "per-minute" and json.loads(x)["timestamp"].endswith("01:05+00:00"))
    assert first["computations"][0]["results"]["previous_ltp"] == 24040  # the last tick of the closed bar


def test_a_replay_in_other_batches_fires_exactly_as_live(r: Any) -> None:
    create_config(price_config("per-minute", frequency="every_interval", interval="1m"))
    for i, t in enumerate(TIMES):  # live: one tick per batch
        process_batch(replay([t], first_id=100 + i))
    live = fired(r, "per-minute")
    r.flushdb()
    registry.forget()
    process_batch(replay(TIMES[:3], first_id=1))  # replay: other batch boundaries
    process_batch(replay(TIMES[3:6], first_id=4))
    process_batch(replay(TIMES[6:], first_id=7))
    assert fired(r, "per-minute") == live == ["04:01:05", "04:02:10", "04:03:00"]
    process_batch(replay(TIMES[3:6], first_id=4))  # a re-delivered batch adds no database rows
    from signals.models import ComputedSignal

    assert ComputedSignal.objects.filter(config_id__isnull=False, name="price").count() == 3 + 3


def test_internal_functions_run_in_the_pipeline_and_report_bad_input(r: Any) -> None:
    create_config(price_config("funcs", internal_functions=[
        {"name": "price"}, {"name": "zscore", "parameters": {"length": 5}}, {"name": "vwap_deviation"},
        {"name": "oi_change"}, {"name": "put_call_ratio", "output_key": "pcr",
                                "parameters": {"chain": [{"right": "CE", "oi": 100}, {"right": "PE", "oi": 150}]}},
    ]))
    process_batch([normalised(tick(SPOT, 24000, at=0, oi=10), "s/1-0"),
                   normalised(tick(SPOT, 24012, at=1, oi=12), "s/2-0")])
    newest = json.loads(r.lindex(keys.output_list(SPOT), 0))
    by_name = {c["name"]: c for c in newest["computations"]}
    assert list(by_name) == ["price", "zscore", "vwap_deviation", "oi_change", "pcr"]
    assert all(c["computation_type"] == "internal_function" and c["success"] for c in by_name.values()), by_name
    assert by_name["price"]["results"]["change"] == pytest.approx(12)
    assert by_name["pcr"]["results"]["oi_pcr"] == pytest.approx(1.5)
    assert by_name["oi_change"]["results"]["oi"] == 12
    assert by_name["zscore"]["results"]["length"] == 5


def test_a_config_change_drops_its_cached_results_and_bumps_the_registry(
        r: Any, django_capture_on_commit_callbacks: Any) -> None:
    from configs.registry import VERSION_KEY

    with django_capture_on_commit_callbacks(execute=True):
        mine = create_config(price_config("mine"))
        other = create_config(price_config("other"))
    process_batch(replay([0]))
    mine_key = keys.latest_result("computed", SPOT, str(mine.pk))
    other_key = keys.latest_result("computed", SPOT, str(other.pk))
    unrelated = keys.latest_result("indicators", SPOT, f"5m:{mine.pk}0")
    r.set(unrelated, "x")
    r.set(keys.latest_result("greeks", SPOT, str(mine.pk)), "{}")
    assert r.exists(mine_key) and r.exists(other_key)
    version = int(r.get(VERSION_KEY))

    with django_capture_on_commit_callbacks(execute=True):
        changes.update_config(mine, price_config("mine", interval="5m"))
    assert not r.exists(mine_key) and not r.exists(keys.latest_result("greeks", SPOT, str(mine.pk)))
    assert r.exists(other_key) and r.exists(unrelated)
    assert int(r.get(VERSION_KEY)) == version + 1

    with django_capture_on_commit_callbacks(execute=True):
        changes.delete_config(other)
    assert not r.exists(other_key)


def test_the_pipeline_stamps_last_runs_at_most_once_per_period(settings: Any) -> None:
    from configs.models import SignalConfig

    settings.SIGNAL_CONFIG_RUN_STAMP_S = 3600
    config = create_config(price_config("stamped"))
    process_batch(replay([0, 1]))
    stamped = SignalConfig.objects.get(pk=config.pk)
    assert (stamped.last_run_status, stamped.last_run_records) == ("ok", 2)
    first_at = stamped.last_run_at
    process_batch(replay([2, 3, 4], first_id=10))
    assert SignalConfig.objects.get(pk=config.pk).last_run_at == first_at  # throttled
    settings.SIGNAL_CONFIG_RUN_STAMP_S = 0
    process_batch(replay([5], first_id=20))
    stamped = SignalConfig.objects.get(pk=config.pk)
    assert stamped.last_run_records == 3 + 1 and stamped.last_run_at > first_at  # what the period accumulated
    assert stamped.revision == 1  # a stamp is not a config change


def test_disabling_through_the_api_stops_the_pipeline_run(r: Any, auth_client: Any,
                                                          django_capture_on_commit_callbacks: Any) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        created = auth_client.post("/api/v2/signals/configs/", price_config("switch"), format="json").json()
    process_batch(replay([0]))
    assert fired(r, "switch") == ["04:00:00"]
    with django_capture_on_commit_callbacks(execute=True):
        auth_client.patch(f"/api/v2/signals/configs/{created['id']}/", {"enabled": False}, format="json")
    process_batch(replay([1], first_id=5))
    assert fired(r, "switch") == ["04:00:00"]
