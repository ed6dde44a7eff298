"""Compressed API answers (docs/REFERENCE.md §6): a JSON body of at least ``SIGNAL_COMPRESS_MIN_BYTES`` goes out
brotli- or gzip-encoded when the client's ``Accept-Encoding`` allows it (brotli preferred, gzip otherwise).

Only ``/api/`` answers: the admin's pages carry CSRF tokens, which compression would expose to BREACH.
"""

from __future__ import annotations

import gzip
import re
from collections.abc import Callable

import brotli
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.utils.cache import patch_vary_headers

_TOKEN = re.compile(r"\s*([a-z0-9*-]+)\s*(?:;\s*q\s*=\s*([0-9.]+))?\s*", re.IGNORECASE)
BROTLI_QUALITY = 4  # near gzip's speed at a better ratio; the top qualities cost 10-100x more time
GZIP_LEVEL = 6


def accepted(header: str) -> set[str]:
    """Codings the ``Accept-Encoding`` header allows (q > 0)."""
    found = set()
    for part in header.split(","):
        match = _TOKEN.fullmatch(part)
        if not match:
            continue
        try:
            weight = float(match.group(2)) if match.group(2) else 1.0
        except ValueError:
            continue
        if weight > 0:
            found.add(match.group(1).lower())
    return found


def encoded(content: bytes, accept_encoding: str) -> tuple[bytes, str | None]:
    """(``content`` as sent, its coding or None): compressed when at least SIGNAL_COMPRESS_MIN_BYTES long and the
    ``Accept-Encoding`` header allows it."""
    if len(content) < settings.SIGNAL_COMPRESS_MIN_BYTES:
        return content, None
    codings = accepted(accept_encoding)
    if "br" in codings:
        return brotli.compress(content, quality=BROTLI_QUALITY), "br"
    if "gzip" in codings or "*" in codings:
        return gzip.compress(content, compresslevel=GZIP_LEVEL, mtime=0), "gzip"
    return content, None


class CompressionMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if not request.path.startswith("/api/") or response.streaming or response.has_header("Content-Encoding"):
            return response
        patch_vary_headers(response, ("Accept-Encoding",))
        body, coding = encoded(response.content, request.META.get("HTTP_ACCEPT_ENCODING", ""))
        if coding is None:
            return response
        response.content = body
        response["Content-Length"] = str(len(body))
        response["Content-Encoding"] = coding
        if response.has_header("ETag"):
            response["ETag"] = re.sub(r'"$', f';{coding}"', response["ETag"])
        return response
