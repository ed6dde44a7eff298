"""The dashboard page at ``/`` and its login (Django's own auth)."""

from __future__ import annotations

from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from configs.models import SignalConfig
from signals.delivery.session import may_use_dashboard


@require_GET
def index(request: HttpRequest) -> HttpResponse:
    if not request.user.is_authenticated:
        return redirect_to_login(request.get_full_path())
    if not may_use_dashboard(request.user):
        return render(request, "dashboard/forbidden.html", status=403)
    return render(request, "dashboard/index.html", {"indicator_specs": indicator_specs()})


def indicator_specs() -> list[dict[str, object]]:
    """The indicators configs compute on underlyings, by output key: what the chart offers (history from the REST
    API, live values from the ``indicators`` channel)."""
    specs: dict[str, dict[str, object]] = {}
    for config in SignalConfig.objects.filter(enabled=True).order_by("name"):
        for spec in config.config.get("technical_indicators") or []:
            key = spec.get("output_key") or spec["name"]
            specs.setdefault(key, {"name": spec["name"], "parameters": spec.get("parameters") or {},
                                   "output_key": key, "instrument_key": config.instrument_key,
                                   "timeframe": config.interval})
    return list(specs.values())
