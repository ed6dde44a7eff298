"""The dashboard's reads under ``/dashboard/api/``: the REST API's own views (same parameters, answers and errors,
docs/REFERENCE.md §6) for the session, and the two things only the dashboard asks: which chains exist, and the
health figures."""

from __future__ import annotations

from datetime import date

from django.conf import settings
from django.urls import path
from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from dashboard.access import SessionReads
from dashboard.health import health
from signals import instrument_registry
from signals.api.greeks_api import HistoricalAtmIvView, OptionChainView
from signals.api.history_api import HistoricalBarsView, HistoricalIndicatorsView, RealtimeIndicatorsView
from signals.models import InstrumentRecord


@extend_schema(exclude=True)  # the session's copy of a documented route
class Bars(SessionReads, HistoricalBarsView):
    pass


@extend_schema(exclude=True)  # the session's copy of a documented route
class Indicators(SessionReads, HistoricalIndicatorsView):
    pass


@extend_schema(exclude=True)  # the session's copy of a documented route
class LatestIndicators(SessionReads, RealtimeIndicatorsView):
    pass


@extend_schema(exclude=True)  # the session's copy of a documented route
class Chain(SessionReads, OptionChainView):
    pass


@extend_schema(exclude=True)  # the session's copy of a documented route
class AtmIvHistory(SessionReads, HistoricalAtmIvView):
    pass


@extend_schema(exclude=True)
class Chains(SessionReads, APIView):
    """Underlyings with listed options and their expiries not yet past, nearest first."""

    def get(self, request: Request) -> Response:
        today = date.today()
        underlyings = sorted(set(InstrumentRecord.objects.filter(product="options")
                                 .values_list("underlying_key", flat=True)))
        chains = [{"underlying": key,
                   "expiries": [e.isoformat() for e in instrument_registry.expiries(key) if e >= today]}
                  for key in underlyings]
        return Response({"chains": [c for c in chains if c["expiries"]],
                         "index_symbols": list(settings.SIGNAL_INDEX_SYMBOLS)})


@extend_schema(exclude=True)
class Health(SessionReads, APIView):
    def get(self, request: Request) -> Response:
        return Response(health())


urlpatterns = [
    path("chains", Chains.as_view(), name="chains"),
    path("health", Health.as_view(), name="health"),
    path("option-chain/<str:underlying>", Chain.as_view(), name="option-chain"),
    path("historical/bars/<str:instrument_key>", Bars.as_view(), name="bars"),
    path("historical/indicators/<str:instrument_key>", Indicators.as_view(), name="indicators"),
    path("realtime/indicators/<str:instrument_key>", LatestIndicators.as_view(), name="latest-indicators"),
    path("historical/moneyness/<str:underlying>/atm-iv", AtmIvHistory.as_view(), name="atm-iv"),
]
