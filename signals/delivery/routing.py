from django.urls import path

from signals.delivery.consumers import SignalConsumer

websocket_urlpatterns = [path("ws/v2/signals/", SignalConsumer.as_asgi())]
