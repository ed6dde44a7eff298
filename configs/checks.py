"""System check: the exchange calendar settings (configs/calendar.py) refuse to start when malformed, naming the
setting."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Error, register

from configs.calendar import CalendarError, build


@register()
def calendar_settings(app_configs: Any, **kwargs: Any) -> list[Any]:
    try:
        build(settings.SIGNAL_EXCHANGE_CALENDAR, settings.EXCHANGE_TIMEZONE, settings.SESSION_OPEN,
              settings.SESSION_CLOSE, settings.SIGNAL_EXCHANGE_HOLIDAYS, settings.SIGNAL_SPECIAL_SESSIONS)
    except CalendarError as exc:
        return [Error(str(exc), id="configs.E001")]
    return []
