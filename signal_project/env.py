"""Small typed helpers that read settings from the environment.

Each helper returns the default when the variable is unset or empty, and raises ImproperlyConfigured naming the
variable when a value cannot be parsed, so a typo fails at start-up instead of at the first tick.
"""

from __future__ import annotations

import os

from django.core.exceptions import ImproperlyConfigured


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, "").strip() or default


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, got {raw!r}") from None


def env_float(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number, got {raw!r}") from None


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ImproperlyConfigured(f"{name} must be true or false, got {raw!r}")


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return list(default)
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_map(name: str, default: dict[str, str]) -> dict[str, str]:
    """Parse ``KEY=VALUE,KEY2=VALUE2`` into a dict."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return dict(default)
    result: dict[str, str] = {}
    for item in raw.split(","):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise ImproperlyConfigured(f"{name} must look like KEY=VALUE,KEY2=VALUE2; bad item {item!r}")
        result[key.strip()] = value.strip()
    return result


def session_minutes(session_open: str, session_close: str) -> int:
    """Minutes from SESSION_OPEN to SESSION_CLOSE (HH:MM each); a malformed value stops start-up naming it."""
    minutes = []
    for name, text in (("SESSION_OPEN", session_open), ("SESSION_CLOSE", session_close)):
        hours, _, mins = text.strip().partition(":")
        if not (hours.isdigit() and mins.isdigit() and int(hours) < 24 and int(mins) < 60):
            raise ImproperlyConfigured(f"{name} must be HH:MM, got {text!r}")
        minutes.append(int(hours) * 60 + int(mins))
    if minutes[1] <= minutes[0]:
        raise ImproperlyConfigured(f"SESSION_CLOSE {session_close!r} must be after SESSION_OPEN {session_open!r}")
    return minutes[1] - minutes[0]
