"""OpenAPI: the platform JWT authentication (drf-spectacular extension) and the errors every operation can answer."""

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class JWTAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "webapi.auth.JWTAuthentication"
    name = "bearerAuth"

    def get_security_definition(self, auto_schema):  # noqa: ANN001, ANN201
        return {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                "description": "Platform JWT (HS256 or RS256); writes need the signals:write scope."}


ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {
        "type": "object",
        "required": ["code", "message"],
        "properties": {
            "code": {"type": "string", "description": "bad_parameter, invalid, bad_json, too_deep, too_large, "
                                                      "not_authenticated, authentication_failed, "
                                                      "permission_denied, not_found, method_not_allowed, not_acceptable, "
                                                      "unsupported_media_type, in_use, conflict, throttled, "
                                                      "unavailable"},
            "message": {"type": "string"},
            "field": {"type": "string", "description": "the parameter or the path of the first failing field, "
                                                       "e.g. technical_indicators[0].parameters.length"},
            "details": {"type": "object", "additionalProperties": {"type": "array", "items": {"type": "string"}},
                        "description": "failing field paths -> their messages (at most 20 paths)"},
            "omitted": {"type": "integer", "description": "failing paths not listed in details"},
            "limit": {"type": "object", "description": "429 only: the limit hit: {kind (realtime, historical, "
                                                       "writes, other, daily_quota), limit, period_s, rate?, tier?, "
                                                       "setting, retry_after}"},
        },
    }},
}
_ALWAYS = {
    "400": "bad parameter or body",
    "401": "missing, malformed or expired token",
    "406": "the Accept header allows no application/json",
    "429": "over the per-user rate of this kind of request or the tier's daily quota (Retry-After; the limit in "
           "error.limit)",
    "503": "unavailable: the database, or Redis where no stored value stands in, cannot be reached (Retry-After)",
}
_WRITES = {"403": "the token lacks the signals:write scope"}
_WITH_PATH_PARAMETERS = {"404": "no such object or instrument"}
_WITH_BODY = {"415": "the body is not application/json"}


def document_errors(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    """Every operation documents each error status it can answer, all in the one error envelope."""
    result.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR_SCHEMA
    envelope = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    for path, operations in result.get("paths", {}).items():
        for method, operation in operations.items():
            statuses = dict(_ALWAYS)
            if method in ("post", "put", "patch", "delete"):
                statuses.update(_WRITES)
            if "{" in path:
                statuses.update(_WITH_PATH_PARAMETERS)
            if "requestBody" in operation:
                statuses.update(_WITH_BODY)
            responses = operation.setdefault("responses", {})
            for code, description in statuses.items():
                responses.setdefault(code, {"description": description})
            for code, response in responses.items():
                if code.startswith(("4", "5")):
                    response["content"] = envelope
    return result
