"""The config stream consumer (issue 4 §4): create/update/delete by name, dead letters, ack after commit, reclaim
of dead consumers' entries, and SIGTERM finishing the entry in hand."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from typing import Any

import pytest
from django.db import OperationalError

from configs.stream import ConfigStreamConsumer, ConfigStreamSettings, apply_message
from tests.factories import price_config
from tests.support import ROOT, wait_for, worker_database_url


def settings_() -> ConfigStreamSettings:
    return ConfigStreamSettings.from_django()


def send(r: Any, action: str, document: dict | str, **extra: str) -> str:
    body = document if isinstance(document, str) else json.dumps(document)
    return r.xadd(settings_().stream, {"config_json": body, "action": action, **extra}).decode()


def consumer(r: Any, name: str = "c1", **overrides: Any) -> ConfigStreamConsumer:
    c = ConfigStreamConsumer(r, replace(settings_(), **overrides), consumer=name)
    c.ensure_group()
    return c


def pending(r: Any) -> int:
    return r.xpending(settings_().stream, settings_().group)["pending"]


def dead_reasons(r: Any) -> list[str]:
    return [fields[b"error"].decode() for _, fields in r.xrange(settings_().dead_letter_stream)]


@pytest.mark.django_db
def test_create_update_delete_by_name(r: Any) -> None:
    from django_celery_beat.models import PeriodicTask

    from configs.models import ConfigRevision, SignalConfig

    c = consumer(r)
    send(r, "create", price_config("from-stream", frequency="on_close"), changed_by="quant-7")
    (outcome,) = c.step()
    assert outcome.status == "applied", outcome
    config = SignalConfig.objects.get(name="from-stream")
    assert config.updated_by == "quant-7" and config.revision == 1 and config.frequency == "on_close"
    task = PeriodicTask.objects.get(name="signal-configs:cron-30_15_x_x_1-5")
    assert (task.crontab.minute, task.crontab.hour, task.crontab.day_of_week) == ("30", "15", "*")  # calendar days
    assert str(task.crontab.timezone) == "Asia/Kolkata"
    assert json.loads(task.kwargs) == {"schedule_key": "cron-30_15_x_x_1-5"}

    send(r, "update", price_config("from-stream", frequency="every_second", interval="5m"))
    (outcome,) = c.step()
    assert outcome.status == "applied" and outcome.config_id == config.pk
    config.refresh_from_db()
    assert config.revision == 2 and config.interval == "5m" and config.updated_by == "config-stream"
    assert not PeriodicTask.objects.filter(name="signal-configs:cron-30_15_x_x_1-5").exists()
    every = PeriodicTask.objects.get(name="signal-configs:every-1s")
    assert every.interval.every == 1 and every.interval.period == "seconds"

    send(r, "delete", {"name": "from-stream"})
    (outcome,) = c.step()
    assert outcome.status == "applied"
    assert not SignalConfig.objects.exists()
    assert not PeriodicTask.objects.filter(name__startswith="signal-configs:").exists()
    assert list(ConfigRevision.objects.filter(config_name="from-stream").order_by("revision")
                .values_list("action", flat=True)) == ["create", "update", "delete"]
    assert pending(r) == 0 and dead_reasons(r) == []


@pytest.mark.django_db
@pytest.mark.parametrize(("fields", "reason"), [
    ({"config_json": "{broken", "action": "create"}, "config_json: not valid JSON"),
    ({"config_json": "[1, 2]", "action": "create"}, "config_json: must be a JSON object"),
    ({"action": "create"}, "config_json: is required"),
    ({"config_json": json.dumps(price_config()), "action": "upsert"}, "action: 'upsert' must be one of"),
    ({"config_json": json.dumps(price_config())}, "action: None must be one of"),
    ({"config_json": json.dumps({"version": "1"}), "action": "delete"}, "config_json.name: is required to delete"),
    ({"config_json": json.dumps(price_config("ghost")), "action": "update"}, "name: no config named 'ghost'"),
    ({"config_json": json.dumps(price_config(interval="2x")), "action": "create"}, "config_json.interval: "),
])
def test_invalid_messages_are_dead_lettered_with_the_reason(r: Any, fields: dict[str, str], reason: str) -> None:
    from configs.models import SignalConfig

    c = consumer(r)
    entry_id = r.xadd(settings_().stream, fields).decode()
    (outcome,) = c.step()
    assert outcome.status == "dead" and outcome.entry_id == entry_id
    ((_, dead),) = r.xrange(settings_().dead_letter_stream)
    assert reason in dead[b"error"].decode(), dead
    assert dead[b"source_id"].decode() == entry_id and dead[b"source_stream"].decode() == settings_().stream
    assert {k.decode(): v.decode() for k, v in dead.items() if k.decode() in fields} == fields
    assert pending(r) == 0
    assert not SignalConfig.objects.exists()


@pytest.mark.django_db
def test_redelivered_changes_are_harmless_but_conflicting_creates_are_refused(r: Any) -> None:
    from configs.models import SignalConfig

    c = consumer(r)
    document = price_config("twice")
    send(r, "create", document)
    send(r, "create", document)  # the same message again (a producer retry)
    send(r, "create", price_config("twice", interval="5m"))  # a different config under a taken name
    send(r, "update", document)  # no change
    send(r, "delete", {"name": "twice"})
    send(r, "delete", {"name": "twice"})  # already gone
    statuses = [c.step()[0].status for _ in range(6)]
    assert statuses == ["applied", "unchanged", "dead", "unchanged", "applied", "unchanged"]
    assert "already exists" in dead_reasons(r)[0]
    assert not SignalConfig.objects.exists() and pending(r) == 0


@pytest.mark.django_db
def test_ack_comes_after_the_commit_and_a_database_failure_leaves_the_entry_pending(r: Any) -> None:
    from configs.models import SignalConfig

    seen: list[int] = []

    def apply_then_check(fields: dict[str, str]) -> Any:
        outcome = apply_message(fields)
        assert SignalConfig.objects.filter(name="acked").exists()  # committed (in this test's transaction)
        seen.append(pending(r))  # ... and not yet acknowledged
        return outcome

    c = ConfigStreamConsumer(r, settings_(), consumer="c1", apply=apply_then_check)
    c.ensure_group()
    send(r, "create", price_config("acked"))
    assert c.step()[0].status == "applied"
    assert seen == [1] and pending(r) == 0

    failures = []

    def database_down(fields: dict[str, str]) -> Any:
        failures.append(fields)
        raise OperationalError("connection to server failed")

    down = ConfigStreamConsumer(r, replace(settings_(), reclaim_idle_ms=50), consumer="c2", apply=database_down)
    send(r, "create", price_config("later"))
    assert down.step()[0].status == "retry"
    assert pending(r) == 1 and dead_reasons(r) == []  # neither acknowledged nor dead-lettered

    time.sleep(0.1)
    recovered = consumer(r, "c3", reclaim_idle_ms=50)
    outcomes = recovered.reclaim()
    assert [o.status for o in outcomes] == ["applied"]
    assert SignalConfig.objects.filter(name="later").exists() and pending(r) == 0


@pytest.mark.django_db
def test_entries_of_a_dead_consumer_are_reclaimed_and_poison_entries_dead_lettered(r: Any) -> None:
    from configs.models import SignalConfig

    crashed = consumer(r, "crashed", reclaim_idle_ms=400)
    send(r, "create", price_config("orphan"))
    assert len(crashed.read(block_ms=10)) == 1  # read, then the process "dies" before handling it
    assert pending(r) == 1

    live = consumer(r, "live", reclaim_idle_ms=400, max_deliveries=5)
    assert live.reclaim() == []  # not idle long enough yet
    time.sleep(0.5)
    (outcome,) = live.reclaim()
    assert outcome.status == "applied" and SignalConfig.objects.filter(name="orphan").exists()
    assert pending(r) == 0

    send(r, "create", price_config("poison"))
    crashed.read(block_ms=10)
    strict = consumer(r, "strict", reclaim_idle_ms=400, max_deliveries=1)
    time.sleep(0.5)
    (outcome,) = strict.reclaim()
    assert outcome.status == "dead" and "delivered 2 times" in outcome.detail
    assert not SignalConfig.objects.filter(name="poison").exists() and pending(r) == 0


@pytest.mark.django_db
def test_a_restarted_consumer_first_finishes_its_own_pending_entries(r: Any) -> None:
    from configs.models import SignalConfig

    first = consumer(r, "same-name")
    send(r, "create", price_config("mine"))
    assert len(first.read(block_ms=10)) == 1
    restarted = consumer(r, "same-name")
    (outcome,) = restarted.step()
    assert outcome.status == "applied" and SignalConfig.objects.filter(name="mine").exists()
    assert pending(r) == 0


@pytest.mark.django_db(transaction=True)
def test_command_applies_entries_and_sigterm_finishes_the_one_in_hand(r: Any) -> None:
    from configs.models import SignalConfig

    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "signal_project.settings_test",
           "DATABASE_URL": worker_database_url(), "SIGNAL_CONFIG_BLOCK_MS": "50"}
    proc = subprocess.Popen([sys.executable, "manage.py", "consume_config_updates", "--consumer", "cmd"], cwd=ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        send(r, "create", price_config("via-command"))
        wait_for(lambda: SignalConfig.objects.filter(name="via-command").exists(), timeout=60)
        for i in range(30):
            send(r, "create", price_config(f"burst-{i}"))
        wait_for(lambda: SignalConfig.objects.filter(name__startswith="burst-").exists(), timeout=30)
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, output
    assert "config stream consumer stopped" in output
    applied = set(SignalConfig.objects.values_list("name", flat=True))
    info = r.xinfo_groups(settings_().stream)[0]
    # Every applied entry was acknowledged and nothing was left half-done: what was not applied is unread.
    assert info["pending"] == 0
    delivered = r.xrange(settings_().stream, max=info["last-delivered-id"])
    assert len(delivered) == len(applied)
