"""Every API error is JSON: ``{"error": {"code", "message", "field"?, "details"?, "omitted"?}}`` (docs/REFERENCE.md
§6), from DRF views (`exception_handler`) and from Django itself (unknown routes, oversized or malformed requests,
and the 500 that should never happen: `handler404`, `handler400`, `handler403`, `handler500`). Bodies are bounded:
at most MAX_LISTED_ERRORS problems are listed, ``omitted`` counts the rest.

A dependency that cannot be reached (Redis, PostgreSQL) answers 503 ``unavailable`` with ``Retry-After``, never
500: views that have a stored equivalent catch the Redis errors themselves (`webapi.dependencies`) and answer from it."""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, JsonResponse
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_handler
from rest_framework.views import set_rollback

from webapi.dependencies import DATABASE_DOWN, REDIS_DOWN
from webapi.limits import MAX_BODY_BYTES, MAX_LISTED_ERRORS, MAX_MESSAGE_CHARS, LimitError

log = logging.getLogger(__name__)


class BadParameter(exceptions.APIException):
    status_code = status.HTTP_400_BAD_REQUEST
    default_code = "bad_parameter"

    def __init__(self, message: str, field: str | None = None, code: str | None = None):
        super().__init__(message, code)
        self.field = field

    @classmethod
    def from_limit(cls, exc: LimitError, field: str | None = None) -> BadParameter:
        return cls(str(exc), field=exc.field or field)


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
    body: dict[str, Any] = {"code": code, "message": message[:MAX_MESSAGE_CHARS]}
    if field:
        body["field"] = field[:MAX_MESSAGE_CHARS]
    return {"error": body}


def _flatten(detail: Any, prefix: str, out: dict[str, list[str]], limit: int) -> int:
    """Collect ``path -> messages`` from DRF's nested detail into ``out`` (at most ``limit`` paths); return how
    many paths did not fit."""
    if isinstance(detail, dict):
        skipped = 0
        for key, value in detail.items():
            path = prefix if key == "non_field_errors" else (f"{prefix}.{key}" if prefix else str(key))
            skipped += _flatten(value, path, out, limit)
        return skipped
    if isinstance(detail, list) and detail and all(not isinstance(item, dict | list) for item in detail):
        if len(out) >= limit and prefix not in out:
            return 1
        out.setdefault(prefix, []).extend(str(item)[:MAX_MESSAGE_CHARS] for item in detail[:5])
        return 0
    if isinstance(detail, list):
        return sum(_flatten(item, f"{prefix}[{i}]", out, limit) for i, item in enumerate(detail))
    if len(out) >= limit and prefix not in out:
        return 1
    out.setdefault(prefix, []).append(str(detail)[:MAX_MESSAGE_CHARS])
    return 0


def validation_body(detail: Any, total: int | None = None) -> dict[str, Any]:
    details: dict[str, list[str]] = {}
    skipped = _flatten(detail, "", details, MAX_LISTED_ERRORS)
    field, messages = next(iter(details.items()), ("", ["invalid input"]))
    body = error_body("invalid", messages[0], field or None)
    body["error"]["details"] = details
    omitted = max(skipped, (total or 0) - len(details))
    if omitted:
        body["error"]["omitted"] = omitted
    return body


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, LimitError):
        exc = BadParameter.from_limit(exc)
    elif isinstance(exc, RequestDataTooBig):
        # DRF reads JSON bodies through request.body, which refuses more than DATA_UPLOAD_MAX_MEMORY_SIZE first
        exc = BadParameter(f"the body is larger than {MAX_BODY_BYTES} bytes", code="too_large")
    else:
        exc = _unavailable(exc) or exc
    response = drf_handler(exc, context)
    if response is None:
        # A bug: logged with its traceback, answered in the same envelope as every other error.
        log.error("unhandled error in %s", type(context.get("view")).__name__, exc_info=exc)
        set_rollback()
        return Response(error_body("server_error", "internal error; it has been logged"),
                        status=status.HTTP_500_INTERNAL_SERVER_ERROR)
    if isinstance(exc, ServiceUnavailable):
        response["Retry-After"] = str(settings.SIGNAL_RETRY_AFTER_S)
    field: str | None = getattr(exc, "field", None)
    if isinstance(exc, exceptions.ValidationError):
        response.data = validation_body(exc.detail, getattr(exc, "total_errors", None))
        return response
    code = getattr(exc, "default_code", None) or "error"
    if isinstance(exc, exceptions.APIException):
        codes = exc.get_codes()
        code = codes if isinstance(codes, str) else code
    message = str(getattr(exc, "detail", exc))
    response.data = error_body(code, message, field)
    limit = getattr(context.get("request"), "signal_limit", None)
    if isinstance(exc, exceptions.Throttled) and limit is not None:
        response.data["error"]["message"] = throttled_message(limit)
        response.data["error"]["limit"] = limit
    return response


def throttled_message(limit: dict[str, Any]) -> str:
    if limit["kind"] == "daily_quota":
        return (f"daily quota of tier {limit['tier']!r} used up ({limit['limit']} requests per exchange date); "
                f"retry after {limit['retry_after']} s")
    return f"over the {limit['kind']} rate of {limit['rate']} ({limit['setting']}); retry after {limit['retry_after']} s"


# --- Django's own error views (signal_project/urls.py) ---------------------------------------------------------
def handler400(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return JsonResponse(error_body("bad_request", str(exception or "bad request")), status=400)


def handler403(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return JsonResponse(error_body("permission_denied", "forbidden"), status=403)


def handler404(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return JsonResponse(error_body("not_found", f"no route {request.path[:200]!r}"), status=404)


def handler500(request: HttpRequest) -> JsonResponse:
    return JsonResponse(error_body("server_error", "internal error; it has been logged"), status=500)
