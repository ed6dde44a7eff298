"""Database look-ups of uploaded external functions, kept apart from the Django-free sandbox package."""

from __future__ import annotations


def external_function_exists(name: str) -> bool:
    from configs.models import ExternalFunction

    return ExternalFunction.objects.filter(name=name).exists()
