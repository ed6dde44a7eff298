"""Time-driven configs in django-celery-beat: one PeriodicTask per shared schedule, kept in sync with every config
change (bulk ones too), in exchange time; the scheduled task recomputes configs from the latest ticks."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from celery import current_app
from django_celery_beat.models import PeriodicTask, PeriodicTasks

from configs import changes
from configs.frequency import parse_frequency
from configs.models import SignalConfig
from configs.registry import registry
from configs.scheduling import next_run, schedule_period, sync_schedules
from feed import keys
from signals.pipeline.batch import process_batch, run_configs
from signals.schedule.timed import latest_ticks, run_schedule
from tests.factories import create_config, normalised, price_config, tick
from tests.support import wait_for

IST = ZoneInfo("Asia/Kolkata")
OPTION = "NSE@NIFTY@options@2030-06-27@call@24000"
EXPIRED = "NSE@NIFTY@options@2024-06-27@call@24000"


def beat_rows() -> dict[str, Any]:
    return {t.name: t for t in PeriodicTask.objects.filter(name__startswith="signal-configs:")
            .select_related("interval", "crontab")}


@pytest.mark.django_db
def test_configs_sharing_a_schedule_share_one_beat_entry() -> None:
    create_config(price_config("a", frequency="every_minute"))
    create_config(price_config("b", frequency="60s"))
    create_config(price_config("c", frequency="1m"))
    create_config(price_config("d", frequency="every_tick"))
    create_config(price_config("e", frequency="every_interval"))
    rows = beat_rows()
    assert list(rows) == ["signal-configs:every-60s"]
    task = rows["signal-configs:every-60s"]
    assert task.task == "configs.run_scheduled" and json.loads(task.kwargs) == {"schedule_key": "every-60s"}
    assert (task.interval.every, task.interval.period) == (60, "seconds")
    assert task.queue == "signals" and task.enabled and task.crontab is None


@pytest.mark.django_db
@pytest.mark.parametrize(("frequency", "cron"), [
    ("on_close", ("30", "15", "*", "*", "*")),  # every day at SESSION_CLOSE: the calendar picks the sessions
    ("daily@09:20", ("20", "9", "*", "*", "*")),
    ("weekly@MON@09:20", ("20", "9", "*", "*", "mon")),
    ("monthly@1@10:05", ("5", "10", "1", "*", "*")),
    ("*/5 9-15 * * 1-5", ("*/5", "9-15", "*", "*", "1-5")),
])
def test_crontab_schedules_are_in_exchange_time(frequency: str, cron: tuple[str, ...]) -> None:
    create_config(price_config("timed", frequency=frequency))
    (task,) = beat_rows().values()
    c = task.crontab
    assert (c.minute, c.hour, c.day_of_month, c.month_of_year, c.day_of_week) == cron
    assert str(c.timezone) == "Asia/Kolkata"
    assert task.name == "signal-configs:" + parse_frequency(frequency).schedule_key


@pytest.mark.django_db
def test_changing_frequency_moves_the_schedule_and_deleting_or_disabling_removes_it() -> None:
    a = create_config(price_config("a", frequency="every_minute"))
    b = create_config(price_config("b", frequency="every_minute"))
    changes.update_config(a, price_config("a", frequency="daily@15:00"))
    assert set(beat_rows()) == {"signal-configs:every-60s", "signal-configs:cron-0_15_x_x_x"}
    changes.update_config(b, price_config("b", frequency="every_tick"))
    assert set(beat_rows()) == {"signal-configs:cron-0_15_x_x_x"}
    stamp = PeriodicTasks.last_change()

    result = changes.set_enabled(SignalConfig.objects.all(), False, changed_by="ops")
    assert result.changed == ["a", "b"] and beat_rows() == {}
    assert PeriodicTasks.last_change() > stamp  # the running beat is told
    a.refresh_from_db()
    assert a.enabled is False and a.config["enabled"] is False and a.revision == 3
    assert a.revisions.order_by("-revision").first().action == "disable"

    changes.set_enabled(SignalConfig.objects.filter(name="a"), True, changed_by="ops")
    assert set(beat_rows()) == {"signal-configs:cron-0_15_x_x_x"}
    changes.delete_config(SignalConfig.objects.get(name="a"), changed_by="ops")
    assert beat_rows() == {}


@pytest.mark.django_db
def test_sync_repairs_hand_edited_rows() -> None:
    create_config(price_config("a", frequency="every_minute"))
    PeriodicTask.objects.filter(name="signal-configs:every-60s").update(enabled=False, queue="elsewhere")
    PeriodicTask.objects.create(name="signal-configs:every-999s", task="configs.run_scheduled",
                                interval=beat_rows()["signal-configs:every-60s"].interval)
    report = sync_schedules()
    assert report.updated == ["every-60s"] and report.deleted == ["every-999s"]
    row = beat_rows()["signal-configs:every-60s"]
    assert row.enabled and row.queue == "signals"
    assert not sync_schedules().changed


@pytest.mark.django_db
def test_next_run_in_exchange_time() -> None:
    friday_evening = datetime(2025, 6, 20, 16, 0, tzinfo=IST)
    assert next_run("on_close", friday_evening) == datetime(2025, 6, 23, 15, 30, tzinfo=IST)
    assert next_run("daily@09:20", datetime(2025, 6, 20, 9, 30, tzinfo=IST)) == \
        datetime(2025, 6, 23, 9, 20, tzinfo=IST)  # Monday: the weekend has no session
    assert next_run("daily@09:20", datetime(2025, 6, 20, 9, 10, tzinfo=IST)) == \
        datetime(2025, 6, 20, 9, 20, tzinfo=IST)
    assert next_run("every_tick", friday_evening) is None
    create_config(price_config("a", frequency="every_minute"))
    now = datetime(2025, 6, 20, 10, 0, tzinfo=IST)
    assert next_run("every_minute", now) == now  # never ran: due now


def feed(*specs: tuple[str, float, float]) -> None:
    process_batch([normalised(tick(key, ltp, at=at), f"tick_stream:NSE@NIFTY/{i + 1}-0")
                   for i, (key, ltp, at) in enumerate(specs)])


def records(r: Any, key: str) -> list[dict[str, Any]]:
    return [json.loads(x) for x in r.lrange(keys.output_list(key), 0, -1)]


@pytest.mark.django_db
def test_scheduled_run_recomputes_from_the_latest_ticks(r: Any) -> None:
    config = create_config(price_config("minutely", frequency="every_minute"))
    feed(("NSE@NIFTY@index", 24000, 0), ("NSE@NIFTY@index", 24010, 5), (OPTION, 120, 6), (EXPIRED, 5, 7),
         ("NSE@BANKNIFTY@index", 52000, 8))
    assert records(r, "NSE@NIFTY@index") == []  # not an every-tick config

    summary = run_schedule("every-60s")
    assert summary == {"schedule_key": "every-60s", "configs": 1, "instruments": 2, "records": 2}
    (spot,) = records(r, "NSE@NIFTY@index")
    assert spot["config_name"] == "minutely" and spot["timestamp"] == "2025-06-20T04:00:05+00:00"
    results = spot["computations"][0]["results"]
    assert results["ltp"] == 24010 and results["change"] == pytest.approx(10)  # previous tick from history
    assert len(records(r, OPTION)) == 1
    assert records(r, EXPIRED) == [] and records(r, "NSE@BANKNIFTY@index") == []
    stamped = SignalConfig.objects.get(pk=config.pk)
    assert stamped.last_run_status == "ok" and stamped.last_run_records == 2 and stamped.last_run_at is not None

    assert run_schedule("cron-0_15_x_x_x") == {"schedule_key": "cron-0_15_x_x_x", "configs": 0, "records": 0}


@pytest.mark.django_db
def test_scheduled_run_without_data_and_overlapping_runs(r: Any) -> None:
    config = create_config(price_config("idle", "NSE@SENSEX@*", frequency="every_minute"))
    assert run_schedule("every-60s")["records"] == 0
    assert SignalConfig.objects.get(pk=config.pk).last_run_status == "no_data"
    r.set(keys.schedule_running("every-60s"), "someone-else", ex=30)
    assert run_schedule("every-60s")["skipped"] == "previous run still going"
    assert r.get(keys.schedule_running("every-60s")) == b"someone-else"  # not released by the skipped run


@pytest.mark.django_db(transaction=True)
def test_scheduled_task_runs_by_name_in_a_real_worker(r: Any, start_worker: Any) -> None:
    create_config(price_config("by-name", frequency="every_second"))
    create_config(price_config("bank", "NSE@BANKNIFTY@*", frequency="every_minute"))
    feed(("NSE@NIFTY@index", 24000, 0), ("NSE@BANKNIFTY@index", 52000, 0))
    start_worker("signals")
    current_app.send_task("configs.run_scheduled", kwargs={"schedule_key": "every-1s"}, queue="signals")
    record = wait_for(lambda: records(r, "NSE@NIFTY@index"), timeout=60)[0]
    assert record["config_name"] == "by-name" and record["computations"][0]["success"] is True
    assert records(r, "NSE@BANKNIFTY@index") == []

    changes.set_enabled(SignalConfig.objects.filter(name="by-name"), False)
    current_app.send_task("configs.run_scheduled", kwargs={"schedule_key": "every-1s"}, queue="signals")
    current_app.send_task("configs.run_scheduled", kwargs={"schedule_key": "every-60s"}, queue="signals")
    # The worker takes tasks in order: once the second has written, the first has run, and found nothing enabled.
    wait_for(lambda: records(r, "NSE@BANKNIFTY@index"), timeout=30)
    assert len(records(r, "NSE@NIFTY@index")) == 1


def test_schedule_periods_name_the_interval_slice_or_the_latest_cron_firing() -> None:
    ist = ZoneInfo("Asia/Kolkata")
    every = parse_frequency("30s")
    assert schedule_period(every, datetime(2025, 6, 20, 9, 30, 1, tzinfo=ist)) == schedule_period(
        every, datetime(2025, 6, 20, 9, 30, 29, tzinfo=ist))
    assert schedule_period(every, datetime(2025, 6, 20, 9, 30, 29, tzinfo=ist)) != schedule_period(
        every, datetime(2025, 6, 20, 9, 30, 31, tzinfo=ist))
    daily = parse_frequency("daily@15:30")
    assert schedule_period(daily, datetime(2025, 6, 20, 16, 5, tzinfo=ist)).endswith("@2025-06-20T15:30")
    assert schedule_period(daily, datetime(2025, 6, 20, 15, 29, tzinfo=ist)).endswith("@2025-06-19T15:30")


@pytest.mark.django_db
def test_a_retried_time_driven_run_writes_its_period_once(r: Any) -> None:

    create_config(price_config("every-minute", frequency="every_minute"))
    process_batch([normalised(tick("NSE@NIFTY@index", 24000, at=0), "tick_stream:NSE@NIFTY/1-0")])
    registry.refresh()
    configs = registry.by_schedule("every-60s")
    ticks, previous = latest_ticks(["NSE@NIFTY@index"])
    first = run_configs(configs, ticks, previous, run="every-60s@1")
    run_configs(configs, ticks, previous, run="every-60s@1")  # the task retried, or a second beat: same period
    assert r.llen(keys.output_list("NSE@NIFTY@index")) == 1
    run_configs(configs, ticks, previous, run="every-60s@2")  # the next period
    assert r.llen(keys.output_list("NSE@NIFTY@index")) == 2
    assert first[0][0]["record_id"].startswith(f"{configs[0].id}:every-60s@1:")
