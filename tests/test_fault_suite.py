"""The fault suite's own logic (docs/RELIABILITY.md): the Procfile it starts and how it counts lost and doubled
records. The suite itself runs with `make faults`."""

from __future__ import annotations

from faults import sinks
from faults.publisher import SentTick
from faults.report import worst_settle
from faults.run import Result
from faults.scenarios import SCENARIOS
from faults.stack import PROCESSES, procfile

CALL = "NSE@NIFTY@options@2025-06-26@call@24000"


def record(config_id: int, key: str, ms: int, record_id: str | None = None) -> dict:
    body = {"config_id": config_id, "instrument_key": key, "tick_data": {"ts": ms / 1000}}
    if record_id:
        body["record_id"] = record_id
    return body


def test_the_suite_starts_every_procfile_process_but_the_feed() -> None:
    commands = procfile()
    assert set(PROCESSES) <= set(commands) and "feed" not in PROCESSES
    assert commands["worker"].startswith("celery ") and "stream_bridge" in commands["bridge"]


def test_expected_records_follow_the_configs_patterns() -> None:
    ticks = [SentTick("tick_stream:NSE@NIFTY", "1-0", CALL, 1000),
             SentTick("tick_stream:NSE@NIFTY", "1-1", "NSE@NIFTY@index", 1000),
             SentTick("tick_stream:NSE@INDVIX", "1-0", "NSE@INDVIX@index", 1000)]
    configs = [sinks.Config(1, "NSE@NIFTY@*"), sinks.Config(2, "NSE@NIFTY@options@*")]
    assert sinks.expected_records(ticks, configs) == {(1, CALL, 1000), (2, CALL, 1000), (1, "NSE@NIFTY@index", 1000)}
    assert ticks[0].source_id == "tick_stream:NSE@NIFTY/1-0"


def test_tally_counts_lost_and_doubled_records_by_identity() -> None:
    expected = {(1, CALL, 1000), (1, CALL, 2000), (1, CALL, 3000)}
    records = [record(1, CALL, 1000), record(1, CALL, 1000), record(1, CALL, 2000),
               record(9, CALL, 1000)]  # another config's record is not this count's business
    count = sinks._tally("output stream", expected, records)
    assert (count.expected, count.lost, count.duplicated, count.ok) == (3, 1, 1, False)
    # with record ids, the same record written twice is a duplicate
    with_ids = [record(1, CALL, ms, f"1:tick_stream:NSE@NIFTY/{ms}-0") for ms in (1000, 2000, 3000, 3000)]
    count = sinks._tally("output list", expected, with_ids)
    assert (count.lost, count.duplicated) == (0, 1)
    assert sinks._tally("output list", expected, with_ids[:3]).ok


def test_a_capped_output_list_is_expected_to_hold_only_the_newest_records() -> None:
    ticks = [SentTick("tick_stream:NSE@NIFTY", f"{ms}-0", CALL, ms) for ms in range(1000, 11000, 1000)]
    configs = [sinks.Config(1, "NSE@NIFTY@*"), sinks.Config(2, "NSE@NIFTY@options@*")]
    kept = sinks.newest_in_list(ticks, configs, cap=6)  # two records a tick: the newest three ticks
    assert kept == {(c, CALL, ms) for c in (1, 2) for ms in (8000, 9000, 10000)}


def test_the_worst_settle_of_repeated_runs_is_reported() -> None:
    bridge, redis_restart = SCENARIOS[1], SCENARIOS[-1]
    runs = [Result(bridge, "", 10, [], 3.0, {}), Result(bridge, "", 10, [], 11.5, {}),
            Result(redis_restart, "", 10, [], 2.0, {}), Result(redis_restart, "", 10, [], None, {}),
            Result(redis_restart, "", 10, [], 4.0, {})]
    assert worst_settle(runs) == "bridge-kill 11.5 s, redis-restart not settled"
    assert not runs[3].ok and runs[0].ok
