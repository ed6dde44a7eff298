"""Typed query parameters and pagination shared by every API view: a value of the wrong type, out of
range or holding text PostgreSQL cannot store is a 400 naming the parameter, never a 500 and never ignored."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from rest_framework.pagination import LimitOffsetPagination
from rest_framework.request import Request

from feed.ticks import TickError, parse_time
from webapi.errors import BadParameter
from webapi.limits import LimitError, ascii_int, check_text, check_time


def int_param(request: Request, name: str, low: int = 0, high: int = 2**63 - 1) -> int | None:
    text = request.query_params.get(name)
    if text is None or text == "":
        return None
    try:
        return ascii_int(text, name, low, high)
    except LimitError as exc:
        raise BadParameter.from_limit(exc) from None


def time_param(request: Request, name: str) -> datetime | None:
    """ISO-8601 with an offset or epoch seconds/ms, within the documented range (webapi/limits.py)."""
    text = request.query_params.get(name)
    if text is None or text.strip() == "":
        return None
    try:
        return check_time(parse_time(check_text(text.strip(), name)), name)
    except (TickError, OverflowError, ValueError) as exc:
        raise BadParameter(f"{name}: {exc}", field=name) from None


class Pagination(LimitOffsetPagination):
    """``limit`` (1-500, default 50) and ``offset`` (0 or more) that are not such integers are a 400."""

    default_limit = 50
    max_limit = 500

    def get_limit(self, request: Request) -> int:
        limit = int_param(request, self.limit_query_param, 1, self.max_limit)
        return self.default_limit if limit is None else limit

    def get_offset(self, request: Request) -> int:
        return int_param(request, self.offset_query_param, 0, 10**12) or 0

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        parameters = super().get_schema_operation_parameters(view)
        bounds = {self.limit_query_param: {"minimum": 1, "maximum": self.max_limit},
                  self.offset_query_param: {"minimum": 0}}
        for parameter in parameters:
            parameter["schema"].update(bounds.get(parameter["name"], {}))
        return parameters
