"""Exactly one celery-beat (a Redis lock held and renewed by the scheduler), and time-driven configs run by a real
beat and a real worker: created through the config stream, scheduled, run, and stopped after delete."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from celery import current_app
from django.conf import settings
from django_celery_beat.models import PeriodicTask

from configs.stream import ConfigStreamConsumer, ConfigStreamSettings
from feed import keys
from signals.pipeline.batch import process_batch
from signals.schedule.beat import BeatLock, SingleBeatScheduler
from tests.factories import normalised, price_config, tick
from tests.support import CeleryProcess, wait_for

SPOT = "NSE@NIFTY@index"


class BeatProcess(CeleryProcess):
    """A `celery beat` with the single-beat scheduler (lock TTL 3 s)."""

    def __init__(self, tmp: Path, name: str, extra_env: dict[str, str] | None = None):
        super().__init__(["beat", "-S", "signals.schedule.beat:SingleBeatScheduler", "-l", "INFO",
                          "--pidfile", str(tmp / f"{name}.pid"), "-s", str(tmp / f"{name}.schedule")],
                         {"SIGNAL_BEAT_LOCK_TTL_S": "3", **(extra_env or {})})

    def saw(self, text: str) -> bool:
        return any(text in line for line in list(self.lines))

    def sent(self, entry: str = "signal-configs:") -> int:
        return sum(1 for line in list(self.lines) if "Sending due task" in line and entry in line)

    def wait_for(self, text: str, timeout: float = 60) -> None:
        try:
            wait_for(lambda: self.saw(text) or self.proc.poll() is not None, timeout=timeout)
        except AssertionError:
            raise AssertionError(f"beat never logged {text!r}:\n" + "".join(self.lines[-30:])) from None
        assert self.saw(text), "beat exited:\n" + "".join(self.lines[-30:])



@pytest.fixture
def beats(tmp_path: Path) -> Any:
    started: list[BeatProcess] = []

    def start(name: str, **env: str) -> BeatProcess:
        beat = BeatProcess(tmp_path, name, env)
        started.append(beat)
        return beat

    yield start
    for beat in started:
        beat.stop()


def test_the_lock_belongs_to_one_holder(r: Any) -> None:
    a = BeatLock(r, "signal:beat:test-lock", 1.0, identity="a")
    b = BeatLock(r, "signal:beat:test-lock", 1.0, identity="b")
    assert a.acquire() and not b.acquire()
    assert a.renew() and not b.renew() and not b.release()
    assert a.holder() == "a"
    time.sleep(1.2)  # the holder died without releasing: the lock expires
    assert b.acquire() and not a.renew() and b.holder() == "b"
    assert b.release() and a.acquire()


@pytest.mark.django_db(transaction=True)  # the scheduler commits and recycles connections itself
def test_a_second_scheduler_stays_idle_until_the_first_goes(r: Any) -> None:
    first = SingleBeatScheduler(app=current_app)
    second = SingleBeatScheduler(app=current_app)
    try:
        assert first.active and not second.active
        assert second.tick() == second.standby_interval and not second.active
        first.tick()
        assert first.active and r.get(settings.SIGNAL_BEAT_LOCK_KEY).decode() == first.beat_lock.token
        first.close()
        assert r.get(settings.SIGNAL_BEAT_LOCK_KEY) is None
        second.tick()
        assert second.active and r.get(settings.SIGNAL_BEAT_LOCK_KEY).decode() == second.beat_lock.token
    finally:
        first.close()
        second.close()


@pytest.mark.django_db(transaction=True)
def test_a_scheduler_that_loses_the_lock_stops_sending(r: Any) -> None:
    scheduler = SingleBeatScheduler(app=current_app)
    try:
        assert scheduler.active
        r.set(settings.SIGNAL_BEAT_LOCK_KEY, "someone-else")  # e.g. it stalled past the TTL and was replaced
        assert scheduler.tick() == scheduler.standby_interval and not scheduler.active
    finally:
        scheduler.close()
    assert r.get(settings.SIGNAL_BEAT_LOCK_KEY) == b"someone-else"  # not released by a non-holder


@pytest.mark.django_db(transaction=True)
def test_a_second_beat_refuses_to_start_when_standby_is_off(r: Any, beats: Any) -> None:
    BeatLock(r, settings.SIGNAL_BEAT_LOCK_KEY, 30, identity="the-running-beat").acquire()
    refused = beats("refused", SIGNAL_BEAT_STANDBY="false")
    refused.proc.wait(60)
    assert refused.proc.returncode != 0
    assert refused.saw("another celery-beat is running"), "".join(refused.lines[-20:])


def send(r: Any, action: str, document: dict) -> None:
    r.xadd(settings.SIGNAL_CONFIG_STREAM, {"config_json": json.dumps(document), "action": action})


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_a_stream_config_runs_on_schedule_under_exactly_one_beat_and_stops_after_delete(
        r: Any, beats: Any, start_worker: Any) -> None:
    consumer = ConfigStreamConsumer(r, ConfigStreamSettings.from_django(), consumer="t")
    consumer.ensure_group()
    send(r, "create", price_config("every-second", frequency="every_second"))
    assert consumer.step()[0].status == "applied"
    task = PeriodicTask.objects.get(name="signal-configs:every-1s")
    assert (task.interval.every, task.interval.period, task.enabled) == (1, "seconds", True)
    process_batch([normalised(tick(SPOT, 24000, at=0), "tick_stream:NSE@NIFTY/1-0")])

    start_worker("signals")
    a = beats("a")
    a.wait_for("holds the single-beat lock")
    b = beats("b")
    b.wait_for("stays idle (standby)")
    wait_for(lambda: r.llen(keys.output_list(SPOT)) >= 3, timeout=30)  # runs every second
    record = json.loads(r.lindex(keys.output_list(SPOT), 0))
    assert record["config_name"] == "every-second" and record["tick_data"]["ltp"] == 24000
    assert a.sent("signal-configs:every-1s") >= 3 and b.sent() == 0

    a.stop()  # the active beat goes away: the standby takes over within the lock's TTL
    b.wait_for("holds the single-beat lock", timeout=30)
    count = r.llen(keys.output_list(SPOT))
    wait_for(lambda: r.llen(keys.output_list(SPOT)) >= count + 2, timeout=30)
    assert b.sent("signal-configs:every-1s") >= 1

    send(r, "delete", {"name": "every-second"})
    assert consumer.step()[0].status == "applied"
    assert not PeriodicTask.objects.filter(name="signal-configs:every-1s").exists()
    b.wait_for("Schedule changed", timeout=30)
    time.sleep(2.5)  # tasks already queued may still arrive (they expire) and find nothing to run
    settled = r.llen(keys.output_list(SPOT))
    sent = b.sent("signal-configs:every-1s")
    time.sleep(3)
    assert r.llen(keys.output_list(SPOT)) == settled
    assert b.sent("signal-configs:every-1s") == sent
