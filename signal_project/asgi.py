"""ASGI entry point: HTTP through Django, WebSocket ``/ws/v2/signals/`` through Channels."""

import gc
import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "signal_project.settings")

from signal_project.http_handler import get_http_application  # noqa: E402

django_asgi_app = get_http_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from signals.delivery.origin import browser_origin_validator  # noqa: E402
from signals.delivery.routing import websocket_urlpatterns  # noqa: E402

# Everything imported so far lives as long as the process; keeping it out of the collector's generations removes
# ~100 ms full collections from request latency.
gc.freeze()

application = ProtocolTypeRouter({
    "http": django_asgi_app,
    "websocket": browser_origin_validator(URLRouter(websocket_urlpatterns)),
})
