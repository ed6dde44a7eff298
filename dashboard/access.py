"""Who may use the dashboard: staff, or members of the ``dashboard`` group (the rule of its WebSocket too)."""

from __future__ import annotations

from typing import Any

from rest_framework.authentication import SessionAuthentication
from rest_framework.permissions import BasePermission

from signals.delivery.session import may_use_dashboard


class DashboardUser(BasePermission):
    message = "log in to the dashboard as staff or a member of the dashboard group"

    def has_permission(self, request: Any, view: Any) -> bool:
        return may_use_dashboard(request.user)


class SessionReads:
    """Mixed into the API's own views: the same answers, for the dashboard's session instead of a JWT."""

    authentication_classes = [SessionAuthentication]
    permission_classes = [DashboardUser]
    throttle_classes: list[Any] = []
