"""Tasks waiting in Celery queues, on either broker: the bridge holds a batch while its queue has one (issue 2),
and `/metrics` reports them.

On Redis a queue is a list (``LLEN``); on RabbitMQ, a passive ``queue.declare`` answers the count of messages ready
for delivery (a message a worker holds unacknowledged is not waiting). A queue that does not exist yet holds none.
"""

from __future__ import annotations

import threading

import amqp
from django.conf import settings
from kombu.utils.url import url_to_parts

from feed.redis_client import get_redis

AMQP_SCHEMES = ("amqp", "amqps", "pyamqp")
_local = threading.local()  # one RabbitMQ channel (and its connection) per thread and URL


def uses_amqp(url: str) -> bool:
    return url.split("://", 1)[0] in AMQP_SCHEMES


def queue_lengths(queues: list[str]) -> list[int]:
    """Tasks waiting in each of ``queues`` on the Celery broker."""
    url = settings.CELERY_BROKER_URL
    if uses_amqp(url):
        return _amqp_lengths(url, queues)
    pipe = get_redis(url).pipeline(transaction=False)
    for queue in queues:
        pipe.llen(queue)
    return [int(n) for n in pipe.execute()]


def _amqp_lengths(url: str, queues: list[str]) -> list[int]:
    try:
        return _counts(url, queues)
    except (OSError, amqp.exceptions.ConnectionError):  # a dropped connection: once more on a new one
        _local.channels.pop(url, None)
        return _counts(url, queues)


def _counts(url: str, queues: list[str]) -> list[int]:
    counts = []
    for queue in queues:
        try:
            counts.append(int(amqp_channel(url).queue_declare(queue, passive=True).message_count))
        except amqp.exceptions.NotFound:  # the broker closed the channel: the next question opens another
            counts.append(0)
    return counts


def amqp_channel(url: str) -> amqp.Channel:
    """This thread's channel to the broker at ``url``, kept open between calls (opening and closing one per call
    would cost two more round trips, and the bridge asks on most of its steps)."""
    channels = getattr(_local, "channels", None)
    if channels is None:
        channels = _local.channels = {}
    found = channels.get(url)
    if found is not None and found.is_open and found.connection.connected:
        return found
    connection = found.connection if found is not None and found.connection.connected else _connect(url)
    channels[url] = connection.channel()
    return channels[url]


def _connect(url: str) -> amqp.Connection:
    _, host, port, user, password, vhost, _ = url_to_parts(url)
    connection = amqp.Connection(host=f"{host or '127.0.0.1'}:{port or 5672}", userid=user or "guest",
                                 password=password or "guest", virtual_host=vhost or "/", connect_timeout=5)
    connection.connect()
    return connection
