"""What the services' clients raise while a dependency cannot be reached: the API answers from a stored equivalent
or 503 ``unavailable`` (`webapi.errors`), never 500."""

from __future__ import annotations

import redis
from django.db import InterfaceError, OperationalError

# redis-py while the server is down, restarting or still loading its data (BusyLoadingError is a ConnectionError)
REDIS_DOWN = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
DATABASE_DOWN = (OperationalError, InterfaceError)
