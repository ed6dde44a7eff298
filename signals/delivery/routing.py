from channels.auth import AuthMiddlewareStack
from django.urls import path

from signals.delivery.consumers import DashboardConsumer, SignalConsumer

websocket_urlpatterns = [
    path("ws/v2/signals/", SignalConsumer.as_asgi()),
    path("ws/v2/dashboard/", AuthMiddlewareStack(DashboardConsumer.as_asgi())),
]
