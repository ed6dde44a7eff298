"""Refuse, before any view runs, a request whose path or query string holds text PostgreSQL cannot store: NUL in a
search term or a filter would otherwise reach the database and fail there (API and admin alike)."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, JsonResponse

from webapi.errors import error_body
from webapi.limits import text_problem


class StorableTextMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        problem = text_problem(request.path)
        if problem:
            return JsonResponse(error_body("bad_parameter", f"path {problem}"), status=400)
        for name, values in request.GET.lists():
            for text in (name, *values):
                problem = text_problem(text)
                if problem:
                    return JsonResponse(error_body("bad_parameter", f"{name[:60]!r}: {problem}",
                                                   field=name[:60]), status=400)
        return self.get_response(request)
