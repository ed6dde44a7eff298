"""The config stream (docs/REFERENCE.md §3.3): ``signal_config_updates`` entries ``{"config_json": "<json>", "action":
"create"|"update"|"delete"}`` (optional ``changed_by``) create, update or delete a config by name.

Read through a consumer group. An entry is acknowledged only after its change is committed; an invalid one
(bad JSON, unknown action, a config that does not validate, create of a name in use, update of an unknown name)
goes to ``signal_config_updates:dead`` with the original fields and the reason, and is acknowledged in the same
MULTI. A database outage leaves the entry pending: it is retried by reclaim, and dead-lettered after
``SIGNAL_CONFIG_MAX_DELIVERIES``. Entries left pending by a dead consumer are reclaimed (XAUTOCLAIM) once idle
for ``SIGNAL_CONFIG_RECLAIM_IDLE_MS``.

Re-deliveries are harmless: a create or update that would leave the config exactly as stored is a no-op, and a
delete of a config that is already gone is acknowledged as done.

Shaped like signals/ingest/bridge.py: small steps (`ensure_group`, `read`, `handle`, `reclaim`, `step`) that tests can
call one at a time, and `run(should_stop)` for the management command, which stops between entries.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis
from django.conf import settings
from django.db import DatabaseError, InterfaceError, connection, transaction

from configs import changes
from configs.models import SignalConfig
from configs.validation import ConfigError
from feed import redis_client
from feed.streams import id_order, text
from feed.ticks import decode_fields
from webapi.limits import LimitError, parse_json, text_problem

log = logging.getLogger(__name__)
Entry = tuple[str, dict[str, str]]  # (entry id, fields)
ACTIONS = ("create", "update", "delete")


class InvalidMessage(ValueError):
    """The entry can never be applied; the message is the dead-letter reason."""


@dataclass
class ConfigStreamSettings:
    stream: str
    group: str
    dead_letter_stream: str
    block_ms: int
    reclaim_idle_ms: int
    reclaim_interval_s: float
    max_deliveries: int

    @classmethod
    def from_django(cls) -> ConfigStreamSettings:
        return cls(
            stream=settings.SIGNAL_CONFIG_STREAM, group=settings.SIGNAL_CONFIG_CONSUMER_GROUP,
            dead_letter_stream=settings.SIGNAL_CONFIG_DEAD_LETTER_STREAM, block_ms=settings.SIGNAL_CONFIG_BLOCK_MS,
            reclaim_idle_ms=settings.SIGNAL_CONFIG_RECLAIM_IDLE_MS, reclaim_interval_s=settings.SIGNAL_CONFIG_RECLAIM_INTERVAL_S,
            max_deliveries=settings.SIGNAL_CONFIG_MAX_DELIVERIES,
        )


@dataclass
class Outcome:
    entry_id: str
    status: str  # applied | unchanged | dead | retry
    detail: str = ""
    config_id: int | None = None


def default_consumer_name() -> str:
    return f"configs-{socket.gethostname()}-{os.getpid()}"


def parse_message(fields: dict[str, str]) -> tuple[str, dict[str, Any], str]:
    """``(action, config document, changed_by)`` or `InvalidMessage` naming the bad field."""
    action = str(fields.get("action", "")).strip().lower()
    if action not in ACTIONS:
        raise InvalidMessage(f"action: {fields.get('action')!r} must be one of {', '.join(ACTIONS)}")
    raw = fields.get("config_json")
    if raw is None or raw == "":
        raise InvalidMessage("config_json: is required (the config as a JSON string)")
    if not isinstance(raw, str | bytes):
        raise InvalidMessage("config_json: must be the config as a JSON string")
    try:
        document = parse_json(raw)
    except LimitError as exc:
        where = f"config_json.{exc.field}" if exc.field else "config_json"
        raise InvalidMessage(f"{where}: {exc}") from None
    if not isinstance(document, dict):
        raise InvalidMessage("config_json: must be a JSON object")
    name = document.get("name")
    if name is not None and not isinstance(name, str):
        raise InvalidMessage("config_json.name: must be a string")
    if action in ("update", "delete") and (not isinstance(name, str) or not name):
        raise InvalidMessage(f"config_json.name: is required to {action} a config (configs are found by name)")
    changed_by = str(fields.get("changed_by") or "config-stream")[:150]
    if text_problem(changed_by):
        raise InvalidMessage(f"changed_by: {text_problem(changed_by)}")
    return action, document, changed_by


def apply_message(fields: dict[str, str]) -> Outcome:
    """Apply one message in one transaction. Raises `InvalidMessage` (dead-letter) or database errors (retry)."""
    action, document, changed_by = parse_message(fields)
    name = document.get("name")
    try:
        with transaction.atomic():
            existing = SignalConfig.objects.select_for_update().filter(name=name).first() if name else None
            if action == "delete":
                if existing is None:
                    return Outcome("", "unchanged", f"no config named {name!r} (already deleted?)")
                config_id = existing.pk
                changes.delete_config(existing, changed_by)
                return Outcome("", "applied", f"deleted {name!r}", config_id)
            if action == "create" and existing is not None:
                if changes.same_document(existing, document):
                    return Outcome("", "unchanged", f"{name!r} already exists as sent", existing.pk)
                raise InvalidMessage(f"name: a config named {name!r} already exists; send action 'update'")
            if action == "update":
                if existing is None:
                    raise InvalidMessage(f"name: no config named {name!r} to update; send action 'create'")
                if changes.same_document(existing, document):
                    return Outcome("", "unchanged", f"{name!r} is already as sent", existing.pk)
                config = changes.update_config(existing, document, changed_by, action="update")
                return Outcome("", "applied", f"updated {name!r} to revision {config.revision}", config.pk)
            config = changes.create_config(document, changed_by, action="create")
            return Outcome("", "applied", f"created {config.name!r}", config.pk)
    except ConfigError as exc:
        raise InvalidMessage("; ".join(f"config_json.{field}: {message}" for field, message in exc.errors)) \
            from None


class ConfigStreamConsumer:
    def __init__(self, client: redis.Redis, config: ConfigStreamSettings, consumer: str | None = None,
                 apply: Callable[[dict[str, str]], Outcome] = apply_message):
        self.client = client
        self.config = config
        self.consumer = consumer or default_consumer_name()
        self.apply = apply
        self._own_pending_checked = False
        self._next_reclaim = 0.0

    # --- steps --------------------------------------------------------------------------------------------------
    def ensure_group(self) -> None:
        try:
            # From id 0: messages sent before the service first started are applied too.
            self.client.xgroup_create(self.config.stream, self.config.group, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def read(self, count: int = 1, block_ms: int | None = None) -> list[Entry]:
        """Next entries: first this consumer's own pending ones (a restart under the same name), then new ones."""
        if not self._own_pending_checked:
            self._own_pending_checked = True
            own = self._xread("0", 100, None)
            if own:
                return own
        return self._xread(">", count, self.config.block_ms if block_ms is None else block_ms)

    def _xread(self, start: str, count: int, block: int | None) -> list[Entry]:
        response = self.client.xreadgroup(self.config.group, self.consumer, {self.config.stream: start},
                                          count=count, block=block)
        return [(text(entry_id), decode_fields(fields)) for _, entries in response or []
                for entry_id, fields in entries if fields]

    def handle(self, entry: Entry) -> Outcome:
        """Apply one entry; ack after commit, dead-letter if invalid, leave pending if the database failed."""
        entry_id, fields = entry
        try:
            outcome = self.apply(fields)
        except InvalidMessage as exc:
            self.dead_letter(entry, str(exc))
            return Outcome(entry_id, "dead", str(exc))
        except (DatabaseError, InterfaceError) as exc:
            log.exception("config change not applied; left pending for retry", extra={"entry": entry_id})
            _close_broken_connection()
            return Outcome(entry_id, "retry", f"{type(exc).__name__}: {exc}")
        self.client.xack(self.config.stream, self.config.group, entry_id)
        outcome.entry_id = entry_id
        log.info("config stream entry handled", extra={"entry": entry_id, "status": outcome.status,
                                                       "detail": outcome.detail})
        return outcome

    def reclaim(self) -> list[Outcome]:
        """Take over entries idle longer than reclaim_idle_ms (dead consumers', or our own failed ones); dead-letter
        those delivered more than max_deliveries times; handle the rest."""
        outcomes: list[Outcome] = []
        start = "0-0"
        while True:
            next_start, entries, *_ = self.client.xautoclaim(
                self.config.stream, self.config.group, self.consumer, self.config.reclaim_idle_ms,
                start_id=start, count=100,
            )
            claimed = [(text(eid), decode_fields(f)) for eid, f in entries if f]
            counts = self._delivery_counts([eid for eid, _ in claimed])
            for entry in claimed:
                times = counts.get(entry[0], 0)
                if times > self.config.max_deliveries:
                    reason = f"delivered {times} times without being applied"
                    self.dead_letter(entry, reason)
                    outcomes.append(Outcome(entry[0], "dead", reason))
                else:
                    outcomes.append(self.handle(entry))
            start = text(next_start)
            if start == "0-0":
                break
        return outcomes

    def step(self) -> list[Outcome]:
        """One round: periodic reclaim, then read and handle one entry."""
        outcomes: list[Outcome] = []
        now = time.monotonic()
        if now >= self._next_reclaim:
            outcomes += self.reclaim()
            self._next_reclaim = now + self.config.reclaim_interval_s
        for entry in self.read():
            outcomes.append(self.handle(entry))
        return outcomes

    def run(self, should_stop: Callable[[], bool]) -> None:
        """Loop until ``should_stop()``; the entry in hand is always finished first (reads are one entry at a time)."""
        self.ensure_group()
        while not should_stop():
            try:
                self.step()
            except redis.ConnectionError:
                log.exception("redis unavailable; retrying")
                time.sleep(1.0)
            except redis.ResponseError as exc:
                if "NOGROUP" in str(exc):  # the stream was deleted: create it and the group again
                    self.ensure_group()
                    continue
                raise

    # --- helpers ------------------------------------------------------------------------------------------------
    def dead_letter(self, entry: Entry, reason: str) -> None:
        entry_id, fields = entry
        pipe = self.client.pipeline(transaction=not redis_client.spans_slots(self.client))  # at worst twice
        pipe.xadd(self.config.dead_letter_stream, {**fields, "error": reason, "source_stream": self.config.stream,
                                                   "source_id": entry_id})
        pipe.xack(self.config.stream, self.config.group, entry_id)
        pipe.execute()
        log.warning("config stream entry dead-lettered", extra={"entry": entry_id, "reason": reason})

    def _delivery_counts(self, ids: list[str]) -> dict[str, int]:
        if not ids:
            return {}
        ordered = sorted(ids, key=id_order)
        pending = self.client.xpending_range(self.config.stream, self.config.group, min=ordered[0],
                                             max=ordered[-1], count=len(ids) + 100, consumername=self.consumer)
        return {text(item["message_id"]): int(item["times_delivered"]) for item in pending}


def _close_broken_connection() -> None:
    try:
        if connection.connection is not None and not connection.is_usable():
            connection.close()
    except Exception:
        connection.close()
