"""Django's HTTP handler for the ASGI web process, with its whole sync stack (middleware and view) in one thread
hop per request.

Django's own ASGIHandler builds an async middleware chain: every ``MiddlewareMixin`` middleware (all of Django's,
and whitenoise's) then runs its ``process_request`` / ``process_response`` through ``sync_to_async`` separately,
and the sync view once more: ~12 hops through the one thread-sensitive executor per request, 6-8 ms of CPU per
``realtime/*`` request (docs/BENCHMARKS.md, "WebSocket fan-out"). This handler builds the sync chain (the one
WSGI and the test client run, so tests exercise exactly this path) and runs it in one hop; the project has no
async views or middleware to lose.

The hop also carries what Django's ``handle`` sends through hops of its own: the ``request_started`` signal and,
for a response whose body is in memory, ``response.close()`` (``request_finished``), as a WSGI server calls them in
its request's thread. And since everything a request does with the database happens inside that one call, it runs
on the event loop's thread pool instead of a thread made for each request (``ThreadSensitiveContext``, which
Django needs only to keep several hops of one request on one thread). A streaming response (a static file) is
sent inside a `ThreadSensitiveContext` of its own, as Django sends every response (its sync body is read through
thread-sensitive hops, which would otherwise share the process's one thread), and closed after it is sent.
"""

from __future__ import annotations

from typing import Any

import django
from asgiref.sync import ThreadSensitiveContext, sync_to_async
from django.core import signals
from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.http import FileResponse, HttpResponseBase
from django.urls import set_script_prefix


class SyncStackASGIHandler(ASGIHandler):
    def __init__(self) -> None:
        super(ASGIHandler, self).__init__()  # BaseHandler: ASGIHandler's would load the async chain
        self.load_middleware(is_async=False)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        # Django's enters a ThreadSensitiveContext for every request; here only a streamed body needs one (below)
        if scope["type"] != "http":
            raise ValueError(f"Django can only handle ASGI/HTTP connections, not {scope['type']}.")
        await self.handle(scope, receive, send)

    async def handle(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        set_script_prefix(get_script_prefix(scope))
        try:
            response = await sync_to_async(self.respond, thread_sensitive=False)(scope, body_file)
            if not response.streaming:
                await self.send_response(response, send)
                return
            # Django reads a sync streaming body through thread-sensitive hops: a thread of this request's own,
            # not the process's one shared thread
            async with ThreadSensitiveContext():
                await self.send_response(response, send)
                await sync_to_async(response.close, thread_sensitive=False)()
        finally:
            body_file.close()

    def respond(self, scope: dict[str, Any], body_file: Any) -> HttpResponseBase:
        """What Django's ``handle`` does between reading the body and sending the response, in one thread."""
        signals.request_started.send(sender=self.__class__, scope=scope)
        request, response = self.create_request(scope, body_file)
        if request is not None:
            response = self.get_response(request)
            response._handler_class = self.__class__
        if isinstance(response, FileResponse):
            response.block_size = self.chunk_size
        if not response.streaming:
            response.close()  # request_finished; the body stays in memory to be sent
        return response


def get_http_application() -> Any:
    """Like ``django.core.asgi.get_asgi_application``, with the one-hop handler."""
    django.setup(set_prefix=False)
    return SyncStackASGIHandler()
