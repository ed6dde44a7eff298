"""Django's HTTP handler for the ASGI web process, with its whole sync stack (middleware and view) in one thread
hop per request.

Django's own ASGIHandler builds an async middleware chain: every ``MiddlewareMixin`` middleware (all of Django's,
and whitenoise's) then runs its ``process_request`` / ``process_response`` through ``sync_to_async`` separately,
and the sync view once more: ~12 hops through the one thread-sensitive executor per request, 6-8 ms of CPU per
``realtime/*`` request (docs/BENCHMARKS.md, "WebSocket fan-out"). This handler builds the sync chain (the one
WSGI and the test client run, so tests exercise exactly this path) and runs it in one hop; the project has no
async views or middleware to lose.
"""

from __future__ import annotations

from typing import Any

import django
from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIHandler
from django.http import HttpRequest, HttpResponseBase


class SyncStackASGIHandler(ASGIHandler):
    def __init__(self) -> None:
        super(ASGIHandler, self).__init__()  # BaseHandler: ASGIHandler's would load the async chain
        self.load_middleware(is_async=False)

    async def get_response_async(self, request: HttpRequest) -> HttpResponseBase:
        """The sync ``get_response`` (URL conf, middleware, view, error logging) in the thread-sensitive
        executor, as Django runs a sync view."""
        return await sync_to_async(self.get_response, thread_sensitive=True)(request)


def get_http_application() -> Any:
    """Like ``django.core.asgi.get_asgi_application``, with the one-hop handler."""
    django.setup(set_prefix=False)
    return SyncStackASGIHandler()
