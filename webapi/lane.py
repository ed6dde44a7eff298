"""The read lane: ``GET`` requests to the API's plain reads (`ReadView`, the ``realtime/*`` and option-chain
endpoints) answered in one thread hop without Django's middleware chain and DRF's dispatch.

A plain read is a function of the path's and query's parameters that reads Redis (or, while Redis is down, the
database) and returns a JSON body; through Django and DRF it cost ~1.6 ms of CPU per request, most of it in the
middleware (sessions, CSRF, auth, messages: nothing an API read uses) and DRF's negotiation, dispatch and
finalising. The lane runs the same parts a read depends on, through the same functions: the Host check
(``ALLOWED_HOSTS``), the storable-text check of the path and query, URL resolution, the bearer token
(`webapi.auth.decode_token`), the request's rate and quota (`webapi.quotas.count_request`), the view's own `read`,
its renderer, the compression of `webapi.compression`, the headers Django's security and frame middleware add, and
``request_started`` / ``request_finished`` around it (database connections are managed as for any request).

It answers only the plain case: a request that would answer anything but 200 (no or bad token, a refused rate, a
bad parameter, an unknown instrument, an unusual ``Accept``, a body, a bad Host, ...) goes to Django unchanged and
gets Django's answer, with what the lane already did handed over in the ASGI scope: the rate count (`LANE_COUNT`), so
the request is counted once, and an error `read` raised (`LANE_READ_ERROR`), so the read is not made twice.
``tests/test_read_lane.py`` holds the two paths to the same answers, header for header.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from typing import Any

from django.conf import settings
from django.core import signals
from django.core.exceptions import SuspiciousOperation
from django.dispatch import receiver
from django.http import QueryDict
from django.http.request import split_domain_port, validate_host
from django.urls import Resolver404, resolve
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import APIView

from webapi.auth import IsPlatformUser, JWTAuthentication, TokenError, bearer_token, decode_token
from webapi.compression import encoded
from webapi.limits import text_problem
from webapi.quotas import LANE_COUNT, KindRateThrottle, RateAndQuotaThrottle, count_request, request_kind

log = logging.getLogger(__name__)

PLAIN_ACCEPT = frozenset({b"*/*", b"application/json"})  # or no Accept header (DRF: */*); an empty one is a 406
LANE_READ_ERROR = "signal.lane_read_error"  # ASGI scope key: what `read` raised in the lane, raised again by the view
# Settings under which Django's middleware redirects, refuses or reads headers by rules the lane does not follow:
# with any of them set, every request goes to Django
MIDDLEWARE_RULES = ("SECURE_SSL_REDIRECT", "SECURE_HSTS_SECONDS", "USE_X_FORWARDED_HOST", "USE_X_FORWARDED_PORT",
                    "DISALLOWED_USER_AGENTS", "PREPEND_WWW")
MAX_CACHED_PATH = 200  # longer paths are resolved each time: the cache's memory stays bounded


class QueryOnly:
    """What a `ReadView.read` sees of the request: its query parameters."""

    __slots__ = ("query_params",)

    def __init__(self, query_params: QueryDict):
        self.query_params = query_params


# A GET whose answer is ``read(request, **path_parameters)``: a body computed from the path's parameters and
# ``request.query_params`` only, raising DRF exceptions for errors. The lane calls the same `read`. (A comment, not
# a docstring: the OpenAPI schema would give every subclass this text as its description.)
class ReadView(APIView):

    def get(self, request: Request, **path_parameters: str) -> Response:
        failed = (getattr(request, "scope", None) or {}).get(LANE_READ_ERROR)
        if failed is not None:  # the lane ran `read` already: its error is answered, not a second read
            raise failed
        return Response(self.read(request, **path_parameters))

    @staticmethod
    def read(request: Request | QueryOnly, **path_parameters: str) -> Any:
        raise NotImplementedError


Answer = tuple[int, list[tuple[bytes, bytes]], bytes]  # status, headers, body


class ReadLane:
    """ASGI application: plain reads of a `ReadView` answered here, everything else by ``django_app``."""

    def __init__(self, django_app: Callable[..., Any]):
        self.django_app = django_app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        view = _read_view(scope["path"]) if scope["type"] == "http" and scope["method"] == "GET" else None
        if view is not None:  # resolved here (cached): any other request goes to Django without a thread hop
            answer = await asyncio.get_running_loop().run_in_executor(_lane_threads(), self.answer, scope, view)
            if answer is not None:
                status, headers, body = answer
                await send({"type": "http.response.start", "status": status, "headers": headers})
                await send({"type": "http.response.body", "body": body})
                return
        await self.django_app(scope, receive, send)

    def answer(self, scope: dict[str, Any], view: tuple[type[ReadView], dict[str, Any]]) -> Answer | None:
        """(status, headers, body), or None for Django to answer."""
        try:
            return _answer(scope, *view)
        except Exception:  # a bug of the lane's own: Django answers the request, the lane's error is logged
            log.exception("the read lane failed on %s; Django answers it", scope["path"][:200])
            return None


# The lane's reads run on threads of their own, few of them. On the loop's default pool (6 threads here) a hiccup
# of ~20 ms let a backlog build that every thread then took up at once: each read's Redis replies waited for the
# GIL behind the others' work, a read took 20-66 ms instead of 1, and one hiccup became 70 slow answers. Two, so
# that one read's Redis round trip overlaps another's work (docs/BENCHMARKS.md, "Eighth session (2026-12-08 ...)").
# Raise it where reads wait on I/O more than they compute (a slow Redis, or the database while Redis is down).
_threads: ThreadPoolExecutor | None = None
_threads_lock = threading.Lock()


def _lane_threads() -> ThreadPoolExecutor:
    global _threads
    running = _threads
    if running is not None:
        return running
    with _threads_lock:
        if _threads is None:
            _threads = ThreadPoolExecutor(settings.SIGNAL_READ_LANE_THREADS, thread_name_prefix="read-lane")
        return _threads


def end_lane_threads() -> None:
    """End the lane's threads (and the database connections they hold) once their reads are done; the next read
    starts new ones. For tests and teardown, on the event loop's thread: a read submitted from another thread
    while they end would fail."""
    global _threads
    with _threads_lock:
        ending, _threads = _threads, None
    if ending is not None:
        ending.shutdown(wait=True)


def _answer(scope: dict[str, Any], view_class: type[ReadView], path_parameters: dict[str, Any]) -> Answer | None:
    headers = dict(scope["headers"])
    if not _plain_request(scope, headers):
        return None
    query = _query(scope)
    if query is None:
        return None
    user = _user(headers.get(b"authorization", b""))
    if user is None:
        return None
    signals.request_started.send(sender=ReadLane, scope=scope)
    try:
        # from here on, whoever answers, the request has been counted
        scope[LANE_COUNT] = count_request(user, request_kind("GET", scope["path"]), KindRateThrottle.timer(),
                                          daily=True)
        if scope[LANE_COUNT][0] is not None:  # refused: Django answers 429
            return None
        try:
            body = view_class.read(QueryOnly(query), **path_parameters)
        except Exception as exc:  # a 4xx, or a dependency down: Django's path answers this error
            scope[LANE_READ_ERROR] = exc
            return None
        return _response(view_class, body, headers.get(b"accept-encoding", b""))
    finally:
        signals.request_finished.send(sender=ReadLane)


def _plain_request(scope: dict[str, Any], headers: dict[bytes, bytes]) -> bool:
    """Whether nothing but the token, the rate and the read's own parameters could make Django's answer other than
    the lane's: no body, no repeated header, a JSON Accept, an allowed Host, and none of the settings that make
    Django's middleware redirect or refuse by other rules."""
    if len(headers) != len(scope["headers"]) or any(b"_" in name for name in headers):
        return False  # Django joins repeated headers (and takes "_" for "-" in names), which dict() would not
    if scope.get("root_path") or b"content-length" in headers or b"transfer-encoding" in headers:
        return False
    if any(getattr(settings, name) for name in MIDDLEWARE_RULES):
        return False
    accept = headers.get(b"accept")
    return (accept is None or accept.strip() in PLAIN_ACCEPT) and _host_allowed(headers.get(b"host"))


def _query(scope: dict[str, Any]) -> QueryDict | None:
    """The query's parameters, or None when Django would refuse the query before any read: not UTF-8, too many
    fields, text PostgreSQL cannot store (StorableTextMiddleware), or DRF's ``format`` override."""
    try:
        query = QueryDict(scope.get("query_string", b"").decode())
    except (UnicodeDecodeError, SuspiciousOperation):
        return None
    if api_settings.URL_FORMAT_OVERRIDE in query or text_problem(scope["path"]):
        return None
    if any(text_problem(text) for name, values in query.lists() for text in (name, *values)):
        return None
    return query


def _host_allowed(host: bytes | None) -> bool:
    """Django's `HttpRequest.get_host` check (with USE_X_FORWARDED_HOST/PORT unset: `MIDDLEWARE_RULES`)."""
    if not host:
        return False
    domain, _ = split_domain_port(host.decode("latin-1"))
    allowed = settings.ALLOWED_HOSTS or ([".localhost", "127.0.0.1", "[::1]"] if settings.DEBUG else [])
    return bool(domain) and validate_host(domain, allowed)


def _read_view(path: str) -> tuple[type[ReadView], dict[str, Any]] | None:
    """The `ReadView` a path resolves to, with its path parameters; None for any other view."""
    if not path.startswith("/api/"):
        return None
    return _resolved_read_view(path) if len(path) <= MAX_CACHED_PATH else _resolve_read_view(path)


@lru_cache(maxsize=4096)
def _resolved_read_view(path: str) -> tuple[type[ReadView], dict[str, Any]] | None:
    return _resolve_read_view(path)


def _resolve_read_view(path: str) -> tuple[type[ReadView], dict[str, Any]] | None:
    try:
        match = resolve(path)
    except Resolver404:
        return None
    view_class = getattr(match.func, "view_class", None)
    if not (_as_view_alone(match.func) and isinstance(view_class, type) and issubclass(view_class, ReadView)
            and _plain_policies(view_class)):
        return None
    return view_class, match.kwargs


def _as_view_alone(func: Any) -> bool:
    """DRF's ``as_view()`` is one wrapper deep (csrf_exempt); a route decorated further (never_cache, say) would
    add to the answer what the lane does not."""
    inner = getattr(func, "__wrapped__", None)
    return bool(getattr(func, "csrf_exempt", False)) and inner is not None and not hasattr(inner, "__wrapped__")


def _plain_policies(view_class: type[ReadView]) -> bool:
    """The view authenticates, permits, throttles, dispatches and finalises as the lane does."""
    return (list(view_class.authentication_classes) == [JWTAuthentication]
            and list(view_class.permission_classes) == [IsPlatformUser]
            and list(view_class.throttle_classes) == [RateAndQuotaThrottle]
            and len(view_class.renderer_classes) == 1
            and inspect.unwrap(view_class.get) is ReadView.get  # (drf-spectacular wraps it per view)
            and all(getattr(view_class, name) is getattr(APIView, name)
                    for name in ("initial", "finalize_response", "dispatch")))


@receiver(signals.setting_changed)
def _forget_routes(setting: str, **kwargs: Any) -> None:
    if setting == "ROOT_URLCONF":  # as Django clears its own resolver cache (tests)
        _resolved_read_view.cache_clear()


def _user(authorization: bytes) -> Any:
    token = bearer_token(authorization.decode("latin-1"))
    if token is None:
        return None
    try:
        return decode_token(token)
    except TokenError:
        return None


def _response(view_class: type[ReadView], body: Any, accept_encoding: bytes) -> Answer:
    renderer = view_class.renderer_classes[0]()
    content, coding = encoded(renderer.render(body), accept_encoding.decode("latin-1"))
    headers = [(b"content-type", renderer.media_type.encode()), (b"allow", _allow(view_class)),
               (b"vary", b"Accept-Encoding"), (b"content-length", str(len(content)).encode()),
               *_security_headers()]
    if coding:
        headers.append((b"content-encoding", coding.encode()))
    return 200, headers, content


@lru_cache(maxsize=64)
def _allow(view_class: type[ReadView]) -> bytes:
    view = view_class()
    view.setup(None)
    return ", ".join(view.allowed_methods).encode()


def _security_headers() -> list[tuple[bytes, bytes]]:
    """What SecurityMiddleware and XFrameOptionsMiddleware add to an API answer over plain HTTP (no HSTS: that is
    only sent over HTTPS, which this project's settings leave to the ingress)."""
    out = [(b"x-frame-options", settings.X_FRAME_OPTIONS.upper().encode())]
    if settings.SECURE_CONTENT_TYPE_NOSNIFF:
        out.append((b"x-content-type-options", b"nosniff"))
    if settings.SECURE_REFERRER_POLICY:  # formatted as SecurityMiddleware does
        policy = settings.SECURE_REFERRER_POLICY
        values = [v.strip() for v in policy.split(",")] if isinstance(policy, str) else policy
        out.append((b"referrer-policy", ",".join(values).encode()))
    if settings.SECURE_CROSS_ORIGIN_OPENER_POLICY:
        out.append((b"cross-origin-opener-policy", settings.SECURE_CROSS_ORIGIN_OPENER_POLICY.encode()))
    return out
