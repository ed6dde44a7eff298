from django.conf import settings
from django.contrib import admin
from django.http import HttpRequest, HttpResponse, HttpResponsePermanentRedirect
from django.urls import Resolver404, include, path, re_path, resolve
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from signals.monitoring import views
from webapi.errors import handler404 as json_not_found

API_CATCH_ALL = r"^api/"


@csrf_exempt  # it changes nothing; a CSRF check would answer an unknown route's POST or DELETE with an HTML 403
def api_not_found(request: HttpRequest, *args: object, **kwargs: object) -> HttpResponse:
    """An unknown route under /api/ answers the JSON 404 even with DEBUG on (Django's debug page is HTML)."""
    slashed = request.path + "/"
    # APPEND_SLASH as CommonMiddleware would do it, had this catch-all not matched first
    if settings.APPEND_SLASH and request.method in ("GET", "HEAD") and not request.path.endswith("/"):
        try:
            match = resolve(slashed)
        except Resolver404:
            match = None
        if match is not None and match.route != API_CATCH_ALL:
            query = request.META.get("QUERY_STRING", "")
            return HttpResponsePermanentRedirect(slashed + (f"?{query}" if query else ""))
    return json_not_found(request)


urlpatterns = [
    path("health", views.health, name="health"),
    path("ready", views.ready, name="ready"),
    path("metrics", views.metrics, name="metrics"),
    path("admin/", admin.site.urls),
    path("api/v2/signals/", include("signals.api.urls")),
    path("api/v2/signals/", include("configs.api.urls")),
    path("api/schema/", SpectacularAPIView.as_view(permission_classes=[], authentication_classes=[]), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema", permission_classes=[],
                                                      authentication_classes=[]), name="docs"),
    path("api/redoc/", SpectacularRedocView.as_view(url_name="schema", permission_classes=[],
                                                     authentication_classes=[]), name="redoc"),
    re_path(API_CATCH_ALL, api_not_found),
    path("", include("dashboard.urls")),
]

handler400 = "webapi.errors.handler400"
handler403 = "webapi.errors.handler403"
handler404 = "webapi.errors.handler404"
handler500 = "webapi.errors.handler500"
