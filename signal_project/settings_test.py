"""Test settings: the real services, but Redis databases and a channel prefix of their own.

The suite flushes its Redis databases between tests, so it must never share them with a running demo stack.
"""

import os

os.environ.setdefault("SIGNAL_JWT_SECRET", "test-jwt-secret-0123456789abcdef-xyz")

from signal_project.settings import *  # noqa: E402,F403
from signal_project.settings import (  # noqa: E402
    CHANNEL_LAYERS,
    DATABASES,
    MIDDLEWARE,
    env_float,
    env_int,
    env_str,
    quorum_queues,
)

# SIGNAL_TEST_SLOT (0-5) gives concurrent test runs on one machine their own database and Redis databases.
_SLOT = int(os.environ.get("SIGNAL_TEST_SLOT", "0"))
if not 0 <= _SLOT <= 5:
    raise ValueError("SIGNAL_TEST_SLOT must be 0-5")
_PLAIN_REDIS_URL = f"redis://127.0.0.1:6379/{15 - 2 * _SLOT}"
REDIS_URL = env_str("TEST_REDIS_URL", _PLAIN_REDIS_URL)
CELERY_BROKER_URL = env_str("TEST_CELERY_BROKER_URL", f"redis://127.0.0.1:6379/{14 - 2 * _SLOT}")
CELERY_TASK_QUEUES = quorum_queues(CELERY_BROKER_URL)
DATABASES["default"]["TEST"] = {"NAME": "test_signal_service" + (f"_{_SLOT}" if _SLOT else "")}
# On a Redis Cluster (`make test-cluster`: REDIS_CLUSTER, TEST_REDIS_URL a node) the layer and the cache stay on
# the plain server
CHANNEL_LAYER_URL = _PLAIN_REDIS_URL if REDIS_CLUSTER else REDIS_URL  # noqa: F405
CHANNEL_LAYER_PREFIX = f"signal-test{_SLOT}-asgi"
CHANNEL_LAYERS["default"]["CONFIG"] = {"hosts": [CHANNEL_LAYER_URL], "prefix": CHANNEL_LAYER_PREFIX}
CACHE_URL = CHANNEL_LAYER_URL
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": CHANNEL_LAYER_URL,
        "KEY_PREFIX": "signal-test-cache",
    }
}
SIGNAL_JWT_SECRET = os.environ["SIGNAL_JWT_SECRET"]
SIGNAL_RECLAIM_IDLE_MS = env_int("TEST_SIGNAL_RECLAIM_IDLE_MS", 500)
SIGNAL_BLOCK_MS = 50
SIGNAL_BRIDGE_LEASE_S = env_float("TEST_SIGNAL_BRIDGE_LEASE_S", 1.0)
# A short visibility timeout, except where a test needs production's (TEST_CELERY_VISIBILITY_TIMEOUT)
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": env_int("TEST_CELERY_VISIBILITY_TIMEOUT", 6),
                                   "unacked_restore_interval": 1,
                                   "unacked_restore_throttle": 1, "socket_timeout": 10, "socket_connect_timeout": 5}
# Tests serve no static files (WhiteNoise would only warn that STATIC_ROOT, made by collectstatic, is missing),
# except a web process a browser test drives (TEST_SERVE_STATIC=true: from the apps' folders, as with DEBUG).
if not env_str("TEST_SERVE_STATIC", ""):
    MIDDLEWARE = [m for m in MIDDLEWARE if not m.startswith("whitenoise.")]
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
TESTING = True
