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
from typing import Any
from zoneinfo import ZoneInfo

from celery.schedules import crontab
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask, PeriodicTasks

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
    assert frequency.cron is not None
    minute, hour, day_of_month, month_of_year, day_of_week = frequency.cron
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


def next_run(frequency_text: str, now: datetime | None = None) -> datetime | None:
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
    return next_cron_time(frequency, now)


def next_cron_time(frequency: Frequency, now: datetime) -> datetime:
    """The first time strictly after ``now`` matching the frequency's crontab, in exchange time."""
    assert frequency.cron is not None
    minute, hour, day_of_month, month_of_year, day_of_week = frequency.cron
    local_now = now.astimezone(exchange_tz()).replace(second=0, microsecond=0)
    schedule = crontab(minute=minute, hour=hour, day_of_month=day_of_month, month_of_year=month_of_year,
                       day_of_week=day_of_week, nowfun=lambda: local_now)
    # remaining_delta: the next run after a run at ``local_now``.
    start, delta, _ = schedule.remaining_delta(local_now, tz=exchange_tz())
    return (start + delta).astimezone(exchange_tz())


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


def schedule_period(frequency: Frequency, now: datetime) -> str:
    """The schedule period a run at ``now`` (aware) belongs to, as text: runs of one period are one run.

    An interval schedule fires at least ``seconds`` apart, so each run falls in its own ``seconds``-long slice of
    epoch time; a crontab's period is its latest firing minute at or before ``now`` (in exchange time), which a
    retried or redelivered run still finds."""
    if frequency.kind == "interval" and frequency.seconds:
        return f"{frequency.schedule_key}@{int(now.timestamp() // frequency.seconds)}"
    assert frequency.cron is not None
    minute, hour, day_of_month, month_of_year, day_of_week = frequency.cron
    cron = crontab(minute=minute, hour=hour, day_of_month=day_of_month, month_of_year=month_of_year,
                   day_of_week=day_of_week)
    at = now.astimezone(exchange_tz()).replace(second=0, microsecond=0)
    for _ in range(8 * 24 * 60):  # a week and a day back covers every weekly schedule
        if (at.minute in cron.minute and at.hour in cron.hour and at.day in cron.day_of_month
                and at.month in cron.month_of_year and (at.weekday() + 1) % 7 in cron.day_of_week):
            break
        at -= timedelta(minutes=1)
    return f"{frequency.schedule_key}@{at.strftime('%Y-%m-%dT%H:%M')}"
