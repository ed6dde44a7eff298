"""The one request body parser: JSON within the limits of webapi/limits.py. Kept apart from webapi/errors.py, which
imports DRF's views, whose import loads this parser (DRF settings)."""

from __future__ import annotations

from typing import Any

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

from webapi.limits import MAX_BODY_BYTES, LimitError, parse_json


class BadBody(ParseError):
    """A request body that is not JSON within the limits (too large, too deep, NUL ...)."""

    def __init__(self, exc: LimitError):
        super().__init__(str(exc), exc.code)
        self.field = exc.field


class BoundedJSONParser(JSONParser):
    """JSON bodies only, read up to MAX_BODY_BYTES and held to the depth, number and text limits."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: dict[str, Any] | None = None) -> Any:
        raw = stream.read(MAX_BODY_BYTES + 1) if stream is not None else b""
        try:
            return parse_json(raw)
        except LimitError as exc:
            raise BadBody(exc) from None
