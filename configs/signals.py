"""Change hooks: every config or function change bumps a version in Redis after commit, so every worker reloads
its configs on its next batch without a restart (SPEC §3.4)."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from configs.models import ExternalFunction, SignalConfig
from configs.registry import bump_version


@receiver([post_save, post_delete], sender=SignalConfig)
@receiver([post_save, post_delete], sender=ExternalFunction)
def _configs_changed(sender: Any, **kwargs: Any) -> None:
    transaction.on_commit(bump_version)
