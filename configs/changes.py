"""Config changes shared by the API, the config stream and the admin. Each one is a single transaction that saves
the config, its revision and the beat schedule together (see configs/receivers.py for what runs after commit)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.utils import timezone

from configs.models import ConfigRevision, SignalConfig
from configs.receivers import after_config_commit
from configs.scheduling import sync_schedules
from configs.validation import ConfigError


class ConfigGone(LookupError):
    """The config was deleted (by a concurrent request) before this change could lock it."""


class ConfigConflict(ConfigError):
    """Another change won a race for the same name; the stored configs are as that change left them."""


def create_config(document: Any, changed_by: str = "", action: str = "create") -> SignalConfig:
    """Validate and store a new config; raises `ConfigError` (a name in use is an error on ``name``)."""
    if not isinstance(document, dict):
        raise ConfigError([("config", "must be a JSON object")])
    with _name_race():
        config = SignalConfig()
        config.set_document(document)
        _check_name_free(config)
        config.save(changed_by=changed_by, action=action)
    return config


def update_config(config: SignalConfig, document: Any, changed_by: str = "", action: str = "update",
                  merge: bool = False) -> SignalConfig:
    """Replace a config's document, or with ``merge`` only its top-level fields in ``document`` (its name and
    enabled flag come from the document; a missing name keeps the current one). The row is locked first, so
    concurrent changes of one config apply one after the other. Raises `ConfigError` (the stored config is
    unchanged then) or `ConfigGone`."""
    if not isinstance(document, dict):
        raise ConfigError([("config", "must be a JSON object")])
    with _name_race():
        locked = lock_config(config.pk)
        document = {"name": locked.name, **(locked.config if merge else {}), **document}
        locked.set_document(document)
        _check_name_free(locked)
        locked.save(changed_by=changed_by, action=action)
    return locked


def delete_config(config: SignalConfig, changed_by: str = "") -> None:
    """Delete under the row lock: a change waiting for the lock then finds no config (`ConfigGone`) instead of
    adding a revision after the delete has detached the others. Raises `ConfigGone` if already deleted."""
    with transaction.atomic():
        locked = lock_config(config.pk)
        locked._changed_by = changed_by  # read by the post_delete hook for the revision
        locked.delete()


def lock_config(config_id: Any) -> SignalConfig:
    """The config row, locked until the surrounding transaction ends; `ConfigGone` when there is none."""
    locked = SignalConfig.objects.select_for_update().filter(pk=config_id).first()
    if locked is None:
        raise ConfigGone(f"no config with id {config_id}")
    return locked


@contextmanager
def _name_race() -> Iterator[None]:
    """A transaction in which losing a race for a unique name is a `ConfigConflict`, not a database error."""
    try:
        with transaction.atomic():
            yield
    except IntegrityError as exc:
        if "signalconfig_name" not in str(exc):  # the unique name; anything else is a bug to report
            raise
        raise ConfigConflict([("name", "another change took this name at the same moment; retry")]) from None


def same_document(config: SignalConfig, document: dict[str, Any]) -> bool:
    """Whether storing ``document`` would leave the config as it is (for idempotent stream re-deliveries)."""
    probe = SignalConfig(pk=config.pk, name=config.name, enabled=config.enabled, config=config.config)
    probe.set_document({"name": config.name, **document})
    try:
        return probe.validated() == config.config and probe.enabled == config.enabled
    except ConfigError:
        return False


def _check_name_free(config: SignalConfig) -> None:
    name = config.name or (config.config or {}).get("name")
    if isinstance(name, str) and SignalConfig.objects.filter(name=name).exclude(pk=config.pk).exists():
        raise ConfigError([("name", f"a config named {name!r} already exists")])


@dataclass
class BulkResult:
    changed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)  # name -> why it cannot be enabled


def set_enabled(queryset: QuerySet[SignalConfig], enabled: bool, changed_by: str = "") -> BulkResult:
    """Enable or disable many configs in one transaction: one bulk UPDATE, a revision each, one schedule sync
    (``PeriodicTasks.update_changed()`` included), one registry bump and cache drop after commit. A config that
    no longer validates (say, its external function was deleted) is not enabled and is reported instead."""
    outcome = BulkResult()
    action = "enable" if enabled else "disable"
    with transaction.atomic():
        configs = list(queryset.select_for_update().order_by("pk"))
        changed: list[SignalConfig] = []
        now = timezone.now()
        for config in configs:
            if config.enabled == enabled:
                outcome.unchanged.append(config.name)
                continue
            config.enabled = enabled
            config.config = {**(config.config or {}), "enabled": enabled}
            if enabled:
                try:
                    config.config = config.validated()
                except ConfigError as exc:
                    outcome.refused[config.name] = str(exc)
                    continue
            config.revision += 1
            config.updated_at = now
            if changed_by:
                config.updated_by = changed_by
            changed.append(config)
        if changed:
            SignalConfig.objects.bulk_update(changed, ["enabled", "config", "revision", "updated_at", "updated_by"])
            ConfigRevision.objects.bulk_create([
                ConfigRevision(config=c, config_name=c.name, revision=c.revision, document=c.config,
                               action=action, changed_by=c.updated_by)
                for c in changed
            ])
            sync_schedules()
            ids = [c.pk for c in changed]
            transaction.on_commit(lambda: after_config_commit(ids))
        outcome.changed = [c.name for c in changed]
    return outcome
