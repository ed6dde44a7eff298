"""Config changes shared by the API, the config stream and the admin. Each one is a single transaction that saves
the config, its revision and the beat schedule together (see configs/receivers.py for what runs after commit)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from configs.models import ConfigRevision, SignalConfig
from configs.receivers import after_config_commit
from configs.scheduling import sync_schedules
from configs.validation import ConfigError


def create_config(document: Any, changed_by: str = "", action: str = "create") -> SignalConfig:
    """Validate and store a new config; raises `ConfigError` (a name in use is an error on ``name``)."""
    if not isinstance(document, dict):
        raise ConfigError([("config", "must be a JSON object")])
    with transaction.atomic():
        config = SignalConfig()
        config.set_document(document)
        _check_name_free(config)
        config.save(changed_by=changed_by, action=action)
    return config


def update_config(config: SignalConfig, document: Any, changed_by: str = "", action: str = "update") -> SignalConfig:
    """Replace a config's document (its name and enabled flag come from the document; a missing name keeps the
    current one). Raises `ConfigError`; the stored config is unchanged then."""
    if not isinstance(document, dict):
        raise ConfigError([("config", "must be a JSON object")])
    document = {"name": config.name, **document}
    with transaction.atomic():
        locked = SignalConfig.objects.select_for_update().get(pk=config.pk)
        locked.set_document(document)
        _check_name_free(locked)
        locked.save(changed_by=changed_by, action=action)
    return locked


def delete_config(config: SignalConfig, changed_by: str = "") -> None:
    with transaction.atomic():
        config._changed_by = changed_by  # read by the post_delete hook for the revision
        config.delete()


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
