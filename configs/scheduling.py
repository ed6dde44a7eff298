"""Time-driven configs in django-celery-beat (docs/REFERENCE.md §3.3, issue 4).

Configs whose frequencies share a schedule (`Frequency.schedule_key`: ``every_minute``, ``1m`` and ``60s`` are the
same) share one `PeriodicTask` named ``signal-configs:{schedule_key}``. Its task, ``configs.run_scheduled``, takes
only the schedule key and looks the configs up when it runs, so a config change never rewrites beat rows unless
the set of schedules in use changes. Crontab schedules are in exchange time (``EXCHANGE_TIMEZONE``, Asia/Kolkata).

`sync_schedules` makes the beat rows match the enabled configs. It runs inside the transaction of every config
change (model save/delete hooks, bulk enable/disable, the API and the config stream), serialised by a PostgreSQL
advisory lock, and tells the running beat through ``PeriodicTasks.update_changed()``. The beat process runs it once
more when it takes the single-beat lock (self-healing after manual edits of the rows).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from celery.schedules import crontab
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask, PeriodicTasks

from configs.calendar import TradingCalendar
from configs.calendar import build as calendar_build
from configs.frequency import Frequency, FrequencyError, parse_frequency
from configs.models import SignalConfig

log = logging.getLogger(__name__)

TASK_NAME = "configs.run_scheduled"
TASK_PREFIX = "signal-configs:"
_ADVISORY_LOCK = 0x5167_4E41  # any constant shared by every process of this service


@dataclass
class SyncReport:
    created: list[str]
    updated: list[str]
    deleted: list[str]

    @property
    def changed(self) -> bool:
        return bool(self.created or self.updated or self.deleted)


def task_name(schedule_key: str) -> str:
    return TASK_PREFIX + schedule_key


def exchange_tz() -> ZoneInfo:
    return ZoneInfo(settings.EXCHANGE_TIMEZONE)


def desired_schedules() -> dict[str, Frequency]:
    """Schedule key -> frequency for every schedule some enabled time-driven config uses."""
    found: dict[str, Frequency] = {}
    for text in SignalConfig.objects.filter(enabled=True).values_list("frequency", flat=True).distinct():
        try:
            frequency = parse_frequency(text)
        except FrequencyError:
            continue
        if frequency.is_time_driven:
            found.setdefault(frequency.schedule_key, frequency)
    return found


def _schedule_fields(frequency: Frequency) -> dict[str, Any]:
    if frequency.kind == "interval":
        assert frequency.seconds is not None
        interval = IntervalSchedule.objects.filter(every=frequency.seconds, period=IntervalSchedule.SECONDS).first()
        if interval is None:
            interval = IntervalSchedule.objects.create(every=frequency.seconds, period=IntervalSchedule.SECONDS)
        # A run that waited longer than its own period in the queue is dropped: the next one is on its way.
        return {"interval": interval, "crontab": None, "expire_seconds": min(max(frequency.seconds, 2), 3600)}
    minute, hour, day_of_month, month_of_year, day_of_week = cron_fields(frequency)
    fields = {"minute": minute, "hour": hour, "day_of_month": day_of_month, "month_of_year": month_of_year,
              "day_of_week": day_of_week, "timezone": settings.EXCHANGE_TIMEZONE}
    crontab = CrontabSchedule.objects.filter(**fields).first()
    if crontab is None:
        crontab = CrontabSchedule.objects.create(**fields)
    return {"interval": None, "crontab": crontab, "expire_seconds": settings.SIGNAL_SCHEDULE_EXPIRE_S}


def sync_schedules() -> SyncReport:
    """Create, update and delete the ``signal-configs:*`` beat rows so they match the enabled configs."""
    report = SyncReport([], [], [])
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_ADVISORY_LOCK])
        desired = desired_schedules()
        existing = {task.name: task for task in PeriodicTask.objects.filter(name__startswith=TASK_PREFIX)}
        for key, frequency in sorted(desired.items()):
            name = task_name(key)
            wanted = {
                **_schedule_fields(frequency),
                "task": TASK_NAME,
                "kwargs": json.dumps({"schedule_key": key}),
                "args": "[]",
                "queue": settings.SIGNAL_SCHEDULED_QUEUE,
                "enabled": True,
                "one_off": False,
                "description": f"Time-driven signal configs with frequency {frequency.text!r} "
                               f"(and equivalents); managed by configs.scheduling, do not edit.",
            }
            task = existing.pop(name, None)
            if task is None:
                PeriodicTask.objects.create(name=name, **wanted)
                report.created.append(key)
                continue
            differs = [field for field, value in wanted.items()
                       if getattr(task, field + "_id" if field in ("interval", "crontab") else field)
                       != (value.pk if field in ("interval", "crontab") and value is not None else value)]
            if differs:
                for field, value in wanted.items():
                    setattr(task, field, value)
                task.save()
                report.updated.append(key)
        for name, task in existing.items():
            task.delete()
            report.deleted.append(name[len(TASK_PREFIX):])
        if report.changed:
            PeriodicTasks.update_changed()
            log.info("beat schedules synced", extra={"schedules_created": report.created,
                                                     "schedules_updated": report.updated,
                                                     "schedules_deleted": report.deleted})
    return report


def next_run(frequency_text: str, now: datetime | None = None, option: dict[str, Any] | None = None
             ) -> datetime | None:
    """When a config with this frequency runs next on its own (None for event-driven frequencies).

    Interval schedules count from the beat entry's last run; crontab schedules are evaluated in exchange time.
    """
    try:
        frequency = parse_frequency(frequency_text)
    except FrequencyError:
        return None
    if not frequency.is_time_driven:
        return None
    now = now or timezone.now()
    if frequency.kind == "interval":
        assert frequency.seconds is not None
        last = PeriodicTask.objects.filter(name=task_name(frequency.schedule_key)).values_list(
            "last_run_at", flat=True).first()
        if last is None:
            return now
        return max(last + timedelta(seconds=frequency.seconds), now)
    return next_cron_time(frequency, now, option)


def next_cron_time(frequency: Frequency, now: datetime, option: dict[str, Any] | None = None
                   ) -> datetime | None:
    """The first time strictly after ``now`` the config runs (its crontab, in exchange time, on the days and at the
    closes the trading calendar allows; None if none within about a year)."""
    minute, hour, day_of_month, month_of_year, day_of_week = cron_fields(frequency)
    schedule = crontab(minute=minute, hour=hour, day_of_month=day_of_month, month_of_year=month_of_year,
                       day_of_week=day_of_week)
    at = now.astimezone(exchange_tz()).replace(second=0, microsecond=0)
    for _ in range(2000):
        # remaining_delta: the next run after a run at ``at``
        start, delta, _ = schedule.remaining_delta(at, tz=exchange_tz())
        at = (start + delta).astimezone(exchange_tz())
        if fires_at(frequency, at, option):
            return at
    return None


def describe(frequency_text: str, interval: str) -> str:
    """A human description of when a config runs (admin and API)."""
    try:
        frequency = parse_frequency(frequency_text)
    except FrequencyError:
        return "invalid frequency"
    if frequency.kind == "every_tick":
        return "on every tick"
    if frequency.kind == "every_interval":
        return f"on each {interval} bar close (by tick time)"
    return f"beat entry {task_name(frequency.schedule_key)} ({settings.EXCHANGE_TIMEZONE})"


def latest_firing(frequency: Frequency, now: datetime) -> datetime:
    """The crontab's latest firing minute at or before ``now`` (aware, in exchange time)."""
    minute, hour, day_of_month, month_of_year, day_of_week = cron_fields(frequency)
    cron = crontab(minute=minute, hour=hour, day_of_month=day_of_month, month_of_year=month_of_year,
                   day_of_week=day_of_week)
    at = now.astimezone(exchange_tz()).replace(second=0, microsecond=0)
    for _ in range(8 * 24 * 60):  # a week and a day back covers every weekly schedule
        if (at.minute in cron.minute and at.hour in cron.hour and at.day in cron.day_of_month
                and at.month in cron.month_of_year and (at.weekday() + 1) % 7 in cron.day_of_week):
            break
        at -= timedelta(minutes=1)
    return at


def schedule_period(frequency: Frequency, now: datetime) -> str:
    """The schedule period a run at ``now`` (aware) belongs to, as text: runs of one period are one run.

    An interval schedule fires at least ``seconds`` apart, so each run falls in its own ``seconds``-long slice of
    epoch time; a crontab's period is its latest firing minute at or before ``now`` (in exchange time), which a
    retried or redelivered run still finds."""
    if frequency.kind == "interval" and frequency.seconds:
        return f"{frequency.schedule_key}@{int(now.timestamp() // frequency.seconds)}"
    return f"{frequency.schedule_key}@{latest_firing(frequency, now).strftime('%Y-%m-%dT%H:%M')}"


# --- the exchange calendar (configs/calendar.py) ------------------------------------------------------------------
_calendar = lru_cache(maxsize=16)(calendar_build)
CALENDAR_GATED = ("daily@", "weekly@", "monthly@")


def trading_calendar(exchange: str | None = None) -> TradingCalendar:
    """The calendar of the settings (or of a config's ``calendar.exchange``)."""
    return _calendar(exchange or settings.SIGNAL_EXCHANGE_CALENDAR, settings.EXCHANGE_TIMEZONE,
                     settings.SESSION_OPEN, settings.SESSION_CLOSE, settings.SIGNAL_EXCHANGE_HOLIDAYS,
                     settings.SIGNAL_SPECIAL_SESSIONS)


def cron_fields(frequency: Frequency) -> tuple[str, str, str, str, str]:
    """The crontab the beat entry uses: the frequency's own, except ``on_close``, which wakes at every close time a
    session can have (SESSION_CLOSE and the special sessions' closes) on every day; `fires_at` then keeps the
    one that is the day's real close."""
    if frequency.text == "on_close":
        closes = trading_calendar().close_times()
        minutes = sorted({t.minute for t in closes})
        hours = sorted({t.hour for t in closes})
        return ",".join(map(str, minutes)), ",".join(map(str, hours)), "*", "*", "*"
    assert frequency.cron is not None
    return frequency.cron


def fires_at(frequency: Frequency, instant: datetime, option: dict[str, Any] | None = None) -> bool:
    """Whether a time-driven config runs for its beat entry firing at ``instant`` (aware; tick time in a backtest).

    ``on_close`` runs only when the firing minute is that exchange date's session close; ``daily@``, ``weekly@``
    and ``monthly@`` only on sessions, unless the config's ``calendar.trading_days_only`` is false. Interval
    frequencies and plain cron strings always run. ``option`` is the config's ``calendar`` section."""
    gated = frequency.text == "on_close" or frequency.text.startswith(CALENDAR_GATED)
    if frequency.kind != "crontab" or not gated:
        return True
    option = option or {}
    calendar = trading_calendar(option.get("exchange"))
    fired = latest_firing(frequency, instant)
    if frequency.text == "on_close":
        return calendar.close_at(fired.date()) == fired
    return not option.get("trading_days_only", True) or calendar.is_session(fired.date())


def config_fires_at(document: dict[str, Any], instant: datetime) -> bool:
    """`fires_at` for a config document: a plain function of the config and the instant."""
    try:
        frequency = parse_frequency(document.get("frequency", "every_tick"))
    except FrequencyError:
        return False
    return fires_at(frequency, instant, document.get("calendar"))
