"""ASGI entry point: HTTP through Django (the API's plain reads through the read lane, `webapi.lane`), WebSocket
``/ws/v2/signals/`` through Channels."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "signal_project.settings")

from signal_project.http_handler import get_http_application  # noqa: E402

django_asgi_app = get_http_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from signal_project.gc_policy import collect_old_objects_rarely  # noqa: E402
from signals.delivery.origin import browser_origin_validator  # noqa: E402
from signals.delivery.routing import websocket_urlpatterns  # noqa: E402
from webapi.lane import ReadLane  # noqa: E402

# Everything imported so far lives as long as the process (frozen out of the collector), and full collections
# come ten times rarer than every ~30 s of churn: each took 40-120 ms with 1,000 sockets open.
collect_old_objects_rarely()

application = ProtocolTypeRouter({
    "http": ReadLane(django_asgi_app),
    "websocket": browser_origin_validator(URLRouter(websocket_urlpatterns)),
})
