"""The dashboard's WebSocket user: the Django session of a same-origin page (the origin check is the ASGI app's),
allowed when staff or in the ``dashboard`` group."""

from __future__ import annotations

from typing import Any

from channels.db import database_sync_to_async

from webapi.auth import PlatformUser

DASHBOARD_GROUP = "dashboard"


def may_use_dashboard(user: Any) -> bool:
    """Staff, or a member of the ``dashboard`` group (reads the database: call from sync code)."""
    if not getattr(user, "is_authenticated", False) or not getattr(user, "is_active", False):
        return False
    return bool(user.is_staff or user.groups.filter(name=DASHBOARD_GROUP).exists())


async def session_user(scope: dict[str, Any]) -> PlatformUser | None:
    """The scope's session user (set by Channels' AuthMiddlewareStack) as a platform user, or None."""
    user = scope.get("user")
    if user is None or not await database_sync_to_async(may_use_dashboard)(user):
        return None
    return PlatformUser(sub=f"session:{user.get_username()}")
