"""Change hooks. A config save or delete, inside its own transaction, brings the beat schedule in line
(`configs.scheduling.sync_schedules`) and records a deletion in the revision history; after commit it bumps the
registry version in Redis (every worker reloads configs and function sources on its next batch, no restart) and
drops the config's cached results (`configs.cache`). Bulk operations run under `bulk_changes()`, which defers the
per-row schedule syncs to one sync at the end."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from configs.cache import drop_config_cache
from configs.models import ConfigRevision, ExternalFunction, SignalConfig
from configs.registry import bump_version
from configs.scheduling import sync_schedules

_state = threading.local()


def _deferred() -> bool:
    return getattr(_state, "depth", 0) > 0


@contextmanager
def bulk_changes(changed_by: str = "") -> Iterator[None]:
    """Defer schedule syncs of the config saves/deletes inside to one sync when the block ends."""
    depth = getattr(_state, "depth", 0)
    _state.depth = depth + 1
    previous_actor = getattr(_state, "actor", "")
    _state.actor = changed_by or previous_actor
    try:
        yield
    finally:
        _state.depth = depth
        _state.actor = previous_actor
    if depth == 0:
        sync_schedules()


def after_config_commit(config_ids: list[int]) -> None:
    bump_version()
    for config_id in config_ids:
        drop_config_cache(config_id)


def _sync_now() -> None:
    if not _deferred():
        sync_schedules()


@receiver(post_save, sender=SignalConfig)
def _config_saved(sender: Any, instance: SignalConfig, **kwargs: Any) -> None:
    _sync_now()
    config_id = instance.pk
    transaction.on_commit(lambda: after_config_commit([config_id]))


@receiver(post_delete, sender=SignalConfig)
def _config_deleted(sender: Any, instance: SignalConfig, **kwargs: Any) -> None:
    ConfigRevision.objects.create(
        config=None, config_name=instance.name, revision=instance.revision + 1, document=instance.config or {},
        action="delete", changed_by=getattr(instance, "_changed_by", "") or getattr(_state, "actor", ""),
    )
    _sync_now()
    config_id = instance.pk
    transaction.on_commit(lambda: after_config_commit([config_id]))


@receiver([post_save, post_delete], sender=ExternalFunction)
def _function_changed(sender: Any, **kwargs: Any) -> None:
    transaction.on_commit(bump_version)
