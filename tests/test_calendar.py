"""The exchange calendar (issue 18): on_close at the session's real close, daily@/weekly@/monthly@ only on trading
days unless a config asks otherwise, special sessions and half-days from the settings, all in exchange time; bad
calendar settings and config options refused naming the field."""

from __future__ import annotations

import json
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.test import override_settings

from configs.calendar import CalendarError, build
from configs.checks import calendar_settings
from configs.frequency import parse_frequency
from configs.models import SignalConfig
from configs.scheduling import config_fires_at, cron_fields, next_run, sync_schedules, trading_calendar
from configs.validation import ConfigError, validate_config
from feed import keys
from signals.pipeline.batch import process_batch
from signals.schedule.timed import run_schedule
from tests.factories import create_config, normalised, price_config, tick

IST = ZoneInfo("Asia/Kolkata")
MAHASHIVRATRI = date(2025, 2, 26)  # an NSE holiday on a Wednesday
MUHURAT = "2025-10-21=13:45-14:45"  # Diwali: closed all day but for the evening session (the package says closed)
HALF_DAY = "2025-02-27=09:15-13:00"  # a made-up early close on a regular Thursday


def ist(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=IST)


def test_the_package_calendar_knows_nse_holidays_and_weekends() -> None:
    calendar = trading_calendar()
    assert not calendar.is_session(MAHASHIVRATRI) and calendar.is_session(date(2025, 2, 27))
    assert not calendar.is_session(date(2025, 3, 1))  # a Saturday
    assert calendar.close_at(date(2025, 2, 27)) == ist(2025, 2, 27, 15, 30)
    assert calendar.close_at(MAHASHIVRATRI) is None
    assert not calendar.is_session(date(2025, 10, 21))  # without the special session


def test_on_close_and_daily_on_an_nse_holiday() -> None:
    on_close, daily = {"frequency": "on_close"}, {"frequency": "daily@10:00"}
    assert not config_fires_at(on_close, ist(2025, 2, 26, 15, 30, 2))
    assert config_fires_at(on_close, ist(2025, 2, 27, 15, 30, 2))
    assert not config_fires_at(daily, ist(2025, 2, 26, 10, 0, 1))
    assert config_fires_at({**daily, "calendar": {"trading_days_only": False}}, ist(2025, 2, 26, 10, 0, 1))
    assert config_fires_at(daily, ist(2025, 2, 27, 10, 0, 1))
    assert not config_fires_at({"frequency": "weekly@WED@10:00"}, ist(2025, 2, 26, 10, 0))
    # the next run after the eve of the holiday skips it
    assert next_run("on_close", ist(2025, 2, 25, 16, 0)) == ist(2025, 2, 27, 15, 30)
    assert next_run("daily@10:00", ist(2025, 2, 25, 16, 0)) == ist(2025, 2, 27, 10, 0)
    assert next_run("daily@10:00", ist(2025, 2, 25, 16, 0), {"trading_days_only": False}) == ist(2025, 2, 26, 10, 0)


def test_half_day_and_special_session_from_the_settings() -> None:
    with override_settings(SIGNAL_SPECIAL_SESSIONS=f"{HALF_DAY},{MUHURAT}"):
        assert cron_fields(parse_frequency("on_close")) == ("0,30,45", "13,14,15", "*", "*", "*")
        on_close = {"frequency": "on_close"}
        assert config_fires_at(on_close, ist(2025, 2, 27, 13, 0, 3))  # the half-day's close
        assert not config_fires_at(on_close, ist(2025, 2, 27, 15, 30, 3))  # not the regular one that day
        assert not config_fires_at(on_close, ist(2025, 2, 27, 13, 30, 3))  # a wake-up of the combined crontab
        assert config_fires_at(on_close, ist(2025, 2, 28, 15, 30, 3))  # the next day is regular
        assert config_fires_at(on_close, ist(2025, 10, 21, 14, 45, 3))  # Muhurat session's close
        assert config_fires_at({"frequency": "daily@10:00"}, ist(2025, 10, 21, 10, 0))  # a session day now
        assert next_run("on_close", ist(2025, 10, 20, 16, 0)) == ist(2025, 10, 21, 14, 45)
    with override_settings(SIGNAL_EXCHANGE_HOLIDAYS="2025-02-27"):
        assert next_run("on_close", ist(2025, 2, 25, 16, 0)) == ist(2025, 2, 28, 15, 30)


@pytest.mark.django_db
def test_a_scheduled_run_on_a_holiday_writes_nothing_and_the_next_day_runs(r: Any) -> None:
    create_config(price_config("at-ten", frequency="daily@10:00"))
    create_config(price_config("every-day", "NSE@NIFTY@index", frequency="daily@10:00",
                               calendar={"trading_days_only": False}))
    process_batch([normalised(tick("NSE@NIFTY@index", 24000, at=0), "tick_stream:NSE@NIFTY/1-0")])
    key = parse_frequency("daily@10:00").schedule_key
    holiday = run_schedule(key, now=ist(2025, 2, 26, 10, 0, 1))
    assert holiday["configs"] == 1 and holiday["records"] == 1
    outputs = [json.loads(x)["config_name"] for x in r.lrange(keys.output_list("NSE@NIFTY@index"), 0, -1)]
    assert outputs == ["every-day"]
    assert run_schedule(key, now=ist(2025, 2, 27, 10, 0, 1))["configs"] == 2
    assert SignalConfig.objects.get(name="at-ten").last_run_status == "ok"


@pytest.mark.django_db
def test_on_close_beat_entry_wakes_every_day_at_each_close_time() -> None:
    with override_settings(SIGNAL_SPECIAL_SESSIONS=HALF_DAY):
        create_config(price_config("closing", frequency="on_close"))
        sync_schedules()
        from django_celery_beat.models import PeriodicTask

        (task,) = PeriodicTask.objects.filter(name__startswith="signal-configs:")
        assert (task.crontab.minute, task.crontab.hour, task.crontab.day_of_week) == ("0,30", "13,15", "*")


@pytest.mark.parametrize(("section", "field", "words"), [
    ({"exchange": "XXXX"}, "calendar.exchange", "unknown exchange calendar"),
    ({"exchange": 5}, "calendar.exchange", "calendar name"),
    ({"trading_days_only": "no"}, "calendar.trading_days_only", "true or false"),
    ({"holidays": []}, "calendar.holidays", "unknown field"),
    ("XNSE", "calendar", "must be an object"),
])
def test_config_validation_refuses_bad_calendar_options(section: Any, field: str, words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        validate_config(price_config("cal", frequency="daily@10:00", calendar=section))
    assert caught.value.errors[0][0] == field and words in caught.value.errors[0][1]
    ok = validate_config(price_config("cal", frequency="daily@10:00", calendar={"exchange": "xbom"}))
    assert ok["calendar"] == {"exchange": "XBOM", "trading_days_only": True}


@pytest.mark.parametrize(("overrides", "field"), [
    ({"SIGNAL_EXCHANGE_CALENDAR": "MARS"}, "SIGNAL_EXCHANGE_CALENDAR"),
    ({"SIGNAL_SPECIAL_SESSIONS": "2025-10-21=14:45-13:45"}, "SIGNAL_SPECIAL_SESSIONS"),
    ({"SIGNAL_SPECIAL_SESSIONS": "diwali"}, "SIGNAL_SPECIAL_SESSIONS"),
    ({"SIGNAL_EXCHANGE_HOLIDAYS": "2025-02-30"}, "SIGNAL_EXCHANGE_HOLIDAYS"),
    ({"SESSION_CLOSE": "09:00"}, "SESSION_CLOSE"),
])
def test_bad_calendar_settings_stop_start_up_naming_the_setting(overrides: dict[str, str], field: str) -> None:
    with override_settings(**overrides):
        (problem,) = calendar_settings(None)
    assert problem.msg.startswith(field + ":")
    with pytest.raises(CalendarError) as caught:
        values = {"SIGNAL_EXCHANGE_CALENDAR": "XNSE", "SESSION_OPEN": "09:15", "SESSION_CLOSE": "15:30",
                  "SIGNAL_EXCHANGE_HOLIDAYS": "", "SIGNAL_SPECIAL_SESSIONS": "", **overrides}
        build(values["SIGNAL_EXCHANGE_CALENDAR"], "Asia/Kolkata", values["SESSION_OPEN"], values["SESSION_CLOSE"],
              values["SIGNAL_EXCHANGE_HOLIDAYS"], values["SIGNAL_SPECIAL_SESSIONS"])
    assert caught.value.field == field
    assert calendar_settings(None) == []
