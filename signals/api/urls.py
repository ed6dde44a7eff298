"""Routes under /api/v2/signals/ (docs/REFERENCE.md §6). Each area keeps its views and routes in its own module."""

from django.urls import path

from signals.api import backtests, discovery, greeks_api, history_api, realtime, stored_api, usage_api

urlpatterns = [
    path("realtime/price/<str:instrument_key>", realtime.RealtimePriceView.as_view(), name="realtime-price"),
    *greeks_api.urlpatterns,
    *history_api.urlpatterns,
    *discovery.urlpatterns,
    *stored_api.urlpatterns,
    *usage_api.urlpatterns,
    *backtests.urlpatterns,
]
