"""The tick pipeline in-process: storage, latest values, config matching and every output sink."""

from __future__ import annotations

import json
from typing import Any

import pytest

from feed import keys
from feed.latest import LatestStore
from signals.delivery import outputs
from signals.pipeline.batch import match_configs, process_batch, run_grouped
from signals.pipeline.computations import COMPUTATIONS, ordered
from signals.pipeline.context import BatchContext
from tests.factories import create_config, fields, normalised, price_config, tick

OPTION = "NSE@NIFTY@options@2025-06-26@call@24000"
pytestmark = pytest.mark.django_db


def batch(*specs: tuple[str, float, float], stream: str = "tick_stream:NSE@NIFTY") -> list[dict[str, Any]]:
    return [normalised(tick(key, ltp, at=at), f"{stream}/{i + 1}-0") for i, (key, ltp, at) in enumerate(specs)]


def test_reprocessing_the_same_batch_adds_no_rows() -> None:
    from signals.models import ComputedSignal, Tick

    create_config(price_config())
    ticks = batch(("NSE@NIFTY@index", 24000, 0), (OPTION, 120, 1), ("NSE@NIFTY@index", 24010, 2))
    first = process_batch(ticks)
    assert first.stored == 3 and first.records == 3
    second = process_batch(ticks)
    assert second.stored == 0
    assert Tick.objects.count() == 3
    assert ComputedSignal.objects.count() == 3


def test_a_batch_overlapping_stored_ticks_stores_only_its_new_ticks_and_their_results() -> None:
    # The bridge regroups reclaimed entries: a batch can hold ticks stored by an earlier batch next to new ones.
    from signals.models import ComputedSignal, Tick

    create_config(price_config())
    ticks = batch(("NSE@NIFTY@index", 24000, 0), (OPTION, 120, 1), ("NSE@NIFTY@index", 24010, 2))
    assert process_batch(ticks[:2]).stored == 2
    overlapping = process_batch(ticks[1:])
    assert overlapping.stored == 1
    assert sorted(Tick.objects.values_list("ltp", flat=True)) == [120, 24000, 24010]
    assert sorted(ComputedSignal.objects.values_list("results__ltp", flat=True)) == [120, 24000, 24010]


def pending_batch(r: Any, *specs: tuple[str, float, float], stream: str = "tick_stream:NSE@NIFTY") -> list[dict]:
    """Ticks as a worker gets them: entries XADDed to ``stream`` and read by the consumer group (so pending)."""
    from django.conf import settings

    ids = [r.xadd(stream, fields(tick(key, ltp, at=at))).decode() for key, ltp, at in specs]
    r.xgroup_create(stream, settings.SIGNAL_CONSUMER_GROUP, id="0", mkstream=True)
    r.xreadgroup(settings.SIGNAL_CONSUMER_GROUP, "bridge", {stream: ">"})
    return [normalised(tick(key, ltp, at=at), f"{stream}/{entry_id}")
            for (key, ltp, at), entry_id in zip(specs, ids, strict=True)]


def test_a_redelivered_batch_writes_its_outputs_once_and_acknowledges_its_entries(r: Any) -> None:
    from django.conf import settings

    create_config(price_config())
    ticks = pending_batch(r, ("NSE@NIFTY@index", 24000, 0), (OPTION, 120, 1))
    assert r.xpending("tick_stream:NSE@NIFTY", settings.SIGNAL_CONSUMER_GROUP)["pending"] == 2
    process_batch(ticks)
    assert r.xpending("tick_stream:NSE@NIFTY", settings.SIGNAL_CONSUMER_GROUP)["pending"] == 0
    process_batch(list(reversed(ticks)))  # as Celery redelivers it (order does not matter)
    assert r.xlen(keys.output_stream("NSE@NIFTY")) == 2
    assert r.llen(keys.output_list(OPTION)) == 1
    assert not r.exists(keys.emitted_entries("tick_stream:NSE@NIFTY"))  # markers live only while a batch is open

    process_batch(pending_batch(r, ("NSE@NIFTY@index", 24000, 0), stream="tick_stream:other"))  # new entries
    assert r.xlen(keys.output_stream("NSE@NIFTY")) == 3


def test_reclaimed_entries_regrouped_into_other_batches_write_their_outputs_once(r: Any, monkeypatch: Any) -> None:
    from signals import storage

    config = create_config(price_config())
    ticks = pending_batch(r, ("NSE@NIFTY@index", 24000, 0), ("NSE@NIFTY@index", 24001, 1),
                          ("NSE@NIFTY@index", 24002, 2))
    real_store = storage.store

    def worker_dies(*args: Any, **kwargs: Any) -> Any:
        raise SystemExit("worker killed after writing the batch's outputs")

    monkeypatch.setattr(storage, "store", worker_dies)
    with pytest.raises(SystemExit):
        process_batch(ticks[:2])
    monkeypatch.setattr(storage, "store", real_store)
    assert r.xlen(keys.output_stream("NSE@NIFTY")) == 2  # written, but the entries are still pending

    process_batch([ticks[1], ticks[2]])  # the bridge regrouped the reclaimed entries with a new one
    process_batch([ticks[0]])
    records = [json.loads(e[1][b"data"]) for e in r.xrange(keys.output_stream("NSE@NIFTY"))]
    assert sorted(rec["tick_data"]["ltp"] for rec in records) == [24000, 24001, 24002]
    assert [json.loads(x)["tick_data"]["ltp"] for x in r.lrange(keys.output_list("NSE@NIFTY@index"), 0, -1)] == [
        24002, 24001, 24000]
    assert {rec["record_id"] for rec in records} == {f"{config.id}:{t['source_id']}" for t in ticks}


def test_same_time_different_entries_are_both_kept() -> None:
    from signals.models import Tick

    process_batch(batch(("NSE@NIFTY@index", 24000, 0), ("NSE@NIFTY@index", 24001, 0)))
    assert Tick.objects.count() == 2


def test_stale_tick_does_not_overwrite_a_newer_latest_value(r: Any) -> None:
    process_batch(batch(("NSE@NIFTY@index", 24100, 10)))
    process_batch([normalised(tick("NSE@NIFTY@index", 23900, at=5), "tick_stream:NSE@NIFTY/99-0")])
    latest = LatestStore(r).get("NSE@NIFTY@index")
    assert latest["ltp"] == 24100
    process_batch([normalised(tick("NSE@NIFTY@index", 24200, at=11), "tick_stream:NSE@NIFTY/100-0")])
    assert LatestStore(r).get("NSE@NIFTY@index")["ltp"] == 24200


def test_latest_results_are_not_moved_back_by_a_concurrent_older_batch(r: Any) -> None:
    config = create_config(price_config())
    process_batch(batch(("NSE@NIFTY@index", 24100, 10)))
    # a batch of an older tick that read the latest values before the batch above wrote them (two workers at once)
    older = batch(("NSE@NIFTY@index", 23900, 5), stream="tick_stream:late")
    ctx = BatchContext(client=r, latest=LatestStore(r))
    records = run_grouped(match_configs(older, "every_tick"), ctx)
    guarded = keys.latest_result("test", "NSE@NIFTY@index")  # a key of the underlying (its slot on a cluster)
    ctx.outbox.guarded_cache_writes.append((guarded, b"older", 60, "NSE@NIFTY@index", older[0]["ts"]))
    outputs.emit(records, r, ctx.outbox)

    cached = json.loads(r.get(keys.latest_result("computed", "NSE@NIFTY@index", str(config.id))))
    assert cached["tick_data"]["ltp"] == 24100
    assert r.get(guarded) is None
    assert r.xlen(keys.output_stream("NSE@NIFTY")) == 2  # the older record itself is still delivered


def test_newest_tick_of_an_out_of_order_batch_wins(r: Any) -> None:
    process_batch(batch(("NSE@NIFTY@index", 2, 20), ("NSE@NIFTY@index", 1, 10)))
    assert LatestStore(r).get("NSE@NIFTY@index")["ltp"] == 2


def test_value_at_or_before_a_tick_time_comes_from_history(r: Any) -> None:
    process_batch(batch(("NSE@NIFTY@index", 1, 0), ("NSE@NIFTY@index", 2, 10), ("NSE@NIFTY@index", 3, 20)))
    from tests.factories import T0

    store = LatestStore(r)
    assert store.at_or_before("NSE@NIFTY@index", T0.timestamp() + 15)["ltp"] == 2
    assert store.at_or_before("NSE@NIFTY@index", T0.timestamp() + 10)["ltp"] == 2
    assert store.at_or_before("NSE@NIFTY@index", T0.timestamp() - 1) is None


def test_price_computation_reaches_every_sink(r: Any) -> None:
    from signals.models import ComputedSignal, InstrumentRecord

    config = create_config(price_config())
    process_batch(batch(("NSE@NIFTY@index", 24000, 0), ("NSE@NIFTY@index", 24012, 1), (OPTION, 120, 2)))

    newest_first = [json.loads(x) for x in r.lrange(keys.output_list("NSE@NIFTY@index"), 0, -1)]
    assert [rec["tick_data"]["ltp"] for rec in newest_first] == [24012, 24000]
    record = newest_first[0]
    assert record["config_id"] == config.id and record["config_name"] == "nifty-price"
    assert record["timestamp"] == "2025-06-20T04:00:01+00:00"
    (computation,) = record["computations"]
    assert computation["computation_type"] == "internal_function" and computation["name"] == "price"
    assert computation["success"] is True and computation["error"] is None
    assert computation["results"]["ltp"] == 24012
    assert computation["results"]["change"] == pytest.approx(12)
    assert newest_first[1]["computations"][0]["results"]["change"] is None  # nothing before the first tick

    entries = r.xrange(keys.output_stream("NSE@NIFTY"))
    assert [e[1][b"instrument_key"].decode() for e in entries] == ["NSE@NIFTY@index", "NSE@NIFTY@index", OPTION]
    assert json.loads(entries[2][1][b"data"])["tick_data"]["ltp"] == 120

    rows = ComputedSignal.objects.filter(instrument_key="NSE@NIFTY@index").order_by("time")
    assert [row.results["ltp"] for row in rows] == [24000, 24012]
    assert set(InstrumentRecord.objects.values_list("key", flat=True)) == {"NSE@NIFTY@index", OPTION}
    assert InstrumentRecord.objects.get(key=OPTION).underlying_key == "NSE@NIFTY@index"


def test_change_continues_from_the_previous_batch(r: Any) -> None:
    create_config(price_config())
    process_batch(batch(("NSE@NIFTY@index", 24000, 0)))
    process_batch([normalised(tick("NSE@NIFTY@index", 23990, at=1), "tick_stream:NSE@NIFTY/50-0")])
    newest = json.loads(r.lindex(keys.output_list("NSE@NIFTY@index"), 0))
    assert newest["computations"][0]["results"]["change"] == pytest.approx(-10)


def test_a_batch_retried_after_a_database_failure_still_continues_from_the_previous_batch(
        r: Any, monkeypatch: Any) -> None:
    from django.db import OperationalError

    from signals.pipeline import batch as pipeline

    create_config(price_config())
    process_batch(batch(("NSE@NIFTY@index", 24000, 0)))
    retried = [normalised(tick("NSE@NIFTY@index", 23990, at=1), "tick_stream:NSE@NIFTY/50-0"),
               normalised(tick(OPTION, 120, at=1.5), "tick_stream:NSE@NIFTY/51-0")]

    def database_down(instrument_keys: list[str]) -> None:
        raise OperationalError("the database went away")

    monkeypatch.setattr(pipeline, "register_instruments", database_down)  # the first sight of the option
    with pytest.raises(OperationalError):
        process_batch(retried)
    monkeypatch.undo()
    process_batch(retried)  # Celery's retry of the same task
    newest = json.loads(r.lindex(keys.output_list("NSE@NIFTY@index"), 0))
    assert newest["computations"][0]["results"]["previous_ltp"] == 24000
    assert newest["computations"][0]["results"]["change"] == pytest.approx(-10)


def test_outputs_follow_the_configs_output_section(r: Any) -> None:
    from signals.models import ComputedSignal

    create_config(price_config(output={"redis_list": False, "redis_stream": True, "store_to_database": False,
                                       "websocket": False}))
    process_batch(batch(("NSE@NIFTY@index", 24000, 0)))
    assert r.llen(keys.output_list("NSE@NIFTY@index")) == 0
    assert r.xlen(keys.output_stream("NSE@NIFTY")) == 1
    assert ComputedSignal.objects.count() == 0


def test_configs_match_by_pattern_and_disabled_configs_do_not_run(r: Any) -> None:
    create_config(price_config("options-only", "NSE@NIFTY@options@*"))
    off = create_config(price_config("disabled", "NSE@NIFTY@*"))
    off.enabled = False
    off.save()
    process_batch(batch(("NSE@NIFTY@index", 24000, 0), (OPTION, 120, 1)))
    assert r.llen(keys.output_list("NSE@NIFTY@index")) == 0
    (record,) = [json.loads(x) for x in r.lrange(keys.output_list(OPTION), 0, -1)]
    assert record["config_name"] == "options-only"


def test_config_change_is_picked_up_without_restart(r: Any) -> None:
    process_batch(batch(("NSE@NIFTY@index", 24000, 0)))
    assert r.llen(keys.output_list("NSE@NIFTY@index")) == 0
    from django.db import transaction

    with transaction.atomic():
        create_config(price_config())
    from configs.registry import bump_version

    bump_version()  # on_commit hooks do not fire inside the test transaction
    process_batch([normalised(tick("NSE@NIFTY@index", 24001, at=1), "tick_stream:NSE@NIFTY/9-0")])
    assert r.llen(keys.output_list("NSE@NIFTY@index")) == 1


def test_output_list_is_capped(r: Any, settings: Any) -> None:
    settings.SIGNAL_OUTPUT_LIST_MAXLEN = 3
    create_config(price_config())
    process_batch(batch(*[("NSE@NIFTY@index", 24000 + i, i) for i in range(5)]))
    assert [json.loads(x)["tick_data"]["ltp"] for x in r.lrange(keys.output_list("NSE@NIFTY@index"), 0, -1)] == \
        [24004, 24003, 24002]


def test_bars_given_to_a_tick_end_at_that_tick(r: Any) -> None:
    """Two ticks of one minute in one batch: each sees the open bar as of its own time, never the later tick."""
    from signals.pipeline.context import BatchContext

    ticks = batch(("NSE@NIFTY@index", 24000, 0), ("NSE@NIFTY@index", 24050, 20), ("NSE@NIFTY@index", 23990, 40))
    process_batch(ticks)
    ctx = BatchContext(client=r, latest=LatestStore(r))
    closes = [ctx.bars("NSE@NIFTY@index", "1m", t["ts"])[-1]["close"] for t in ticks]
    assert closes == [24000, 24050, 23990]
    highs = [ctx.bars("NSE@NIFTY@index", "1m", t["ts"])[-1]["high"] for t in ticks]
    assert highs == [24000, 24050, 24050]


def test_computations_run_after_the_ones_they_read() -> None:
    names = [computation.type for computation in COMPUTATIONS]
    assert names.index("greeks") < names.index("moneyness")
    moneyness, greeks = COMPUTATIONS[names.index("moneyness")], COMPUTATIONS[names.index("greeks")]
    assert moneyness.after == ("greeks",)
    with pytest.raises(ValueError, match="runs before"):
        ordered(moneyness, greeks)


def test_a_batch_retried_after_a_storage_failure_computes_what_an_undisturbed_run_does(r: Any,
                                                                                     monkeypatch: Any) -> None:
    from django.db import OperationalError

    from signals import storage
    from signals.models import ComputedSignal
    from signals.pipeline.attempts import process_until_done

    create_config(price_config())
    create_config(price_config("bank-price", pattern="NSE@BANKNIFTY@*"))
    process_batch(batch(("NSE@NIFTY@index", 24000, 0)))
    process_batch(batch(("NSE@BANKNIFTY@index", 52000, 0), stream="tick_stream:NSE@BANKNIFTY"))
    real_store, failures = storage.store, []

    def fails_once(*args: Any, **kwargs: Any) -> Any:
        if not failures:
            failures.append(1)
            raise OperationalError("server closed the connection unexpectedly")
        return real_store(*args, **kwargs)

    monkeypatch.setattr(storage, "store", fails_once)
    process_until_done(batch(("NSE@NIFTY@index", 24012, 1), stream="tick_stream:retry"))  # latest moved, then failed
    monkeypatch.setattr(storage, "store", real_store)
    process_batch(batch(("NSE@BANKNIFTY@index", 52012, 1), stream="tick_stream:calm"))  # the same, undisturbed
    assert failures == [1]

    def second_result(key: str) -> dict:
        rows = ComputedSignal.objects.filter(instrument_key=key).order_by("time")
        return {k: v for k, v in rows[1].results.items() if k not in ("timestamp", "previous_timestamp")}

    retried, calm = second_result("NSE@NIFTY@index"), second_result("NSE@BANKNIFTY@index")
    assert retried["previous_ltp"] == 24000 and retried["change"] == 12
    assert (calm["previous_ltp"], calm["change"]) == (52000, 12)


def test_underlying_history_lost_by_redis_comes_from_the_stored_ticks(r: Any) -> None:
    from tests.greeks_helpers import greeks_config, greeks_of

    create_config(greeks_config())
    process_batch(batch(("NSE@NIFTY@index", 24000, 0)))
    r.delete(keys.price_history("NSE@NIFTY@index"), keys.latest_tick("NSE@NIFTY@index"))  # a restart without AOF
    process_batch(batch((OPTION, 120, 1), stream="tick_stream:options"))
    greeks = greeks_of(r, OPTION)["ltp"]
    assert greeks["status"] == "ok" and greeks["underlying_price"] == 24000 and greeks["stale_underlying"] is False


def test_a_batch_holding_one_entry_twice_writes_its_outputs_once(r: Any) -> None:
    create_config(price_config())
    ticks = pending_batch(r, ("NSE@NIFTY@index", 24000, 0))
    report = process_batch(ticks + [dict(ticks[0])])
    assert report.ticks == 1 and r.xlen(keys.output_stream("NSE@NIFTY")) == 1
