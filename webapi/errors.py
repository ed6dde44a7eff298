"""Every API error is JSON: ``{"error": {"code", "message", "field"?}}`` (docs/REFERENCE.md §6).

A dependency that cannot be reached (Redis, PostgreSQL) answers 503 ``unavailable`` with ``Retry-After``, never
500: views that have a stored equivalent catch the Redis errors themselves (`webapi.dependencies`) and answer from it."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_handler

from webapi.dependencies import DATABASE_DOWN, REDIS_DOWN


class BadParameter(exceptions.APIException):
    status_code = status.HTTP_400_BAD_REQUEST
    default_code = "bad_parameter"

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


class NotFound(exceptions.NotFound):
    default_code = "not_found"


class ServiceUnavailable(exceptions.APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_code = "unavailable"


def _unavailable(exc: Exception) -> ServiceUnavailable | None:
    if isinstance(exc, REDIS_DOWN):
        return ServiceUnavailable(f"Redis is unreachable ({type(exc).__name__}); retry shortly")
    if isinstance(exc, DATABASE_DOWN):
        return ServiceUnavailable(f"the database is unreachable ({type(exc).__name__}); retry shortly")
    return None


def error_body(code: str, message: str, field: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"code": code, "message": message}
    if field:
        body["field"] = field
    return {"error": body}


def _first_field_error(detail: Any, prefix: str = "") -> tuple[str | None, str]:
    if isinstance(detail, dict):
        for key, value in detail.items():
            field = f"{prefix}.{key}" if prefix else str(key)
            if key == "non_field_errors":
                field = prefix or None
            found_field, message = _first_field_error(value, field or "")
            return found_field or field, message
    if isinstance(detail, list) and detail:
        return _first_field_error(detail[0], prefix)
    return (prefix or None), str(detail)


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    exc = _unavailable(exc) or exc
    response = drf_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, ServiceUnavailable):
        response["Retry-After"] = str(settings.SIGNAL_RETRY_AFTER_S)
    field: str | None = getattr(exc, "field", None)
    if isinstance(exc, exceptions.ValidationError):
        field, message = _first_field_error(exc.detail)
        code = "invalid"
        response.data = error_body(code, message, field)
        response.data["error"]["details"] = exc.detail
        return response
    code = getattr(exc, "default_code", None) or "error"
    if isinstance(exc, exceptions.APIException):
        codes = exc.get_codes()
        code = codes if isinstance(codes, str) else code
    message = str(getattr(exc, "detail", exc))
    response.data = error_body(code, message, field)
    return response
