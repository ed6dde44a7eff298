"""Settings for Signal Service: every deployment knob is read from the environment here, and only here.

Defaults work on a developer machine with PostgreSQL and Redis on 127.0.0.1. `webapi.checks` refuses to start
with a missing or malformed value and names the variable.
"""

from __future__ import annotations

from pathlib import Path

import dj_database_url
from kombu import Queue

from feed import keys
from signal_project.env import env_bool, env_float, env_int, env_list, env_map, env_str, session_minutes
from signal_project.logs import logging_config

BASE_DIR = Path(__file__).resolve().parent.parent

DEBUG = env_bool("DEBUG", False)
SECRET_KEY = env_str("DJANGO_SECRET_KEY", "dev-only-insecure-secret-key-change-me")
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "testserver", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_beat",
    "channels",
    "signals",
    "configs",
    "dashboard",
]
LOGIN_URL = "dashboard:login"
LOGIN_REDIRECT_URL = "dashboard:index"
LOGOUT_REDIRECT_URL = "dashboard:login"

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "webapi.compression.CompressionMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "webapi.middleware.StorableTextMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "signal_project.urls"
ASGI_APPLICATION = "signal_project.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASE_URL = env_str("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/signal_service")
DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=env_int("DB_CONN_MAX_AGE", 60))}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env_str("REDIS_URL", "redis://127.0.0.1:6379/0")
# REDIS_URL names one node of a Redis Cluster (the clients find the others); the Django cache and the Channels layer
# then need plain servers of their own (CACHE_URL, CHANNEL_LAYER_URL).
REDIS_CLUSTER = env_bool("REDIS_CLUSTER", False)
CACHE_URL = env_str("CACHE_URL", REDIS_URL)
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": CACHE_URL,
        "KEY_PREFIX": "signal-cache",
    }
}

# Channels' PubSub layer publishes on Redis channels, which are global to the server (not per database), so the
# prefix is what keeps two deployments (or the tests and a running demo) apart on one Redis.
CHANNEL_LAYER_URL = env_str("CHANNEL_LAYER_URL", REDIS_URL)
CHANNEL_LAYER_PREFIX = env_str("CHANNEL_LAYER_PREFIX", "signal-asgi")
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
        "CONFIG": {"hosts": [CHANNEL_LAYER_URL], "prefix": CHANNEL_LAYER_PREFIX},
    }
}

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True

# --- Exchange and market data -------------------------------------------------------------------------------
EXCHANGE_TIMEZONE = env_str("EXCHANGE_TIMEZONE", "Asia/Kolkata")
SESSION_OPEN = env_str("SESSION_OPEN", "09:15")
SESSION_CLOSE = env_str("SESSION_CLOSE", "15:30")
# Trading days (configs/calendar.py): an exchange_calendars name (XNSE reads XBOM: NSE and BSE share holidays; none:
# every weekday), extra closed dates, and dates with their own hours (half-days, Muhurat sessions).
SIGNAL_EXCHANGE_CALENDAR = env_str("SIGNAL_EXCHANGE_CALENDAR", "XNSE")
SIGNAL_EXCHANGE_HOLIDAYS = env_str("SIGNAL_EXCHANGE_HOLIDAYS", "")
SIGNAL_SPECIAL_SESSIONS = env_str("SIGNAL_SPECIAL_SESSIONS", "")
SIGNAL_INDEX_SYMBOLS = env_list(
    "SIGNAL_INDEX_SYMBOLS", ["NIFTY", "BANKNIFTY", "FINNIFTY", "MIDCPNIFTY", "SENSEX", "BANKEX", "INDVIX"]
)
SIGNAL_VIX_KEY = env_str("SIGNAL_VIX_KEY", "NSE@INDVIX@index")
SIGNAL_UNDERLYING_STALENESS_S = env_float("SIGNAL_UNDERLYING_STALENESS_S", 2.0)
# An option tick whose underlying (or INDVIX) is stale at its time waits this long in the bridge for a fresh one
# still on its way on another stream (signals/ingest/waits.py); 0 turns the wait off.
SIGNAL_UNDERLYING_WAIT_MS = env_int("SIGNAL_UNDERLYING_WAIT_MS", 200)

# --- Stream bridge ------------------------------------------------------------------------------------------
SIGNAL_STREAM_PATTERNS = env_list("SIGNAL_STREAM_PATTERNS", [keys.tick_stream_pattern()])
SIGNAL_DEAD_LETTER_STREAM = env_str("SIGNAL_DEAD_LETTER_STREAM", keys.tick_dead_letters())
SIGNAL_CONSUMER_GROUP = env_str("SIGNAL_CONSUMER_GROUP", "signal_service")
SIGNAL_BATCH_SIZE = env_int("SIGNAL_BATCH_SIZE", 1000)
SIGNAL_BLOCK_MS = env_int("SIGNAL_BLOCK_MS", 200)
SIGNAL_BATCH_MAX_WAIT_MS = env_int("SIGNAL_BATCH_MAX_WAIT_MS", 50)
SIGNAL_DISCOVERY_INTERVAL_S = env_float("SIGNAL_DISCOVERY_INTERVAL_S", 5.0)
# Entries stay pending until a worker has processed and stored their batch (docs/RELIABILITY.md). A bridge sends
# again the entries idle for SIGNAL_RECLAIM_IDLE_MS whose queue has no task waiting (a worker leases the entries
# of the batch in its hands, so only a dead worker's batch goes idle), looking every SIGNAL_RECLAIM_INTERVAL_S; an
# entry sent more than SIGNAL_MAX_DELIVERIES times goes to the dead-letter stream.
SIGNAL_RECLAIM_INTERVAL_S = env_float("SIGNAL_RECLAIM_INTERVAL_S", 1.0)
SIGNAL_RECLAIM_IDLE_MS = env_int("SIGNAL_RECLAIM_IDLE_MS", 6_000)
SIGNAL_MAX_DELIVERIES = env_int("SIGNAL_MAX_DELIVERIES", 10)
# A batch meeting a PostgreSQL or Redis outage retries in its worker for up to this long (below the task's soft
# time limit) before it gives up and leaves its entries to be sent again.
SIGNAL_TASK_RETRY_BUDGET_S = env_float("SIGNAL_TASK_RETRY_BUDGET_S", 60.0)
# One underlying's batches run one at a time, in the order sent (signals/ingest/turns.py): a batch waits for an
# earlier one running for up to SIGNAL_TURN_WAIT_S, and SIGNAL_TURN_GRACE_S for one nobody runs (its worker died).
SIGNAL_TURN_WAIT_S = env_float("SIGNAL_TURN_WAIT_S", 120.0)
SIGNAL_TURN_GRACE_S = env_float("SIGNAL_TURN_GRACE_S", 2.0)
# Each tick stream is read by one bridge at a time, which holds a lease on it for SIGNAL_BRIDGE_LEASE_S (renewed
# every third of it); the streams are shared out among the live bridges (signals/ingest/stream_leases.py). 0: every
# bridge reads every stream.
SIGNAL_BRIDGE_LEASE_S = env_float("SIGNAL_BRIDGE_LEASE_S", 3.0)
SIGNAL_DEFAULT_QUEUE = env_str("SIGNAL_DEFAULT_QUEUE", "signals")
# Underlying (EXCHANGE@SYMBOL) -> Celery queue, e.g. "NSE@NIFTY=nifty,NSE@BANKNIFTY=banknifty".
SIGNAL_QUEUE_ROUTES = env_map("SIGNAL_QUEUE_ROUTES", {})
SIGNAL_REPUBLISH_PROCESSED = env_bool("SIGNAL_REPUBLISH_PROCESSED", False)

# --- Outputs ------------------------------------------------------------------------------------------------
SIGNAL_OUTPUT_LIST_MAXLEN = env_int("SIGNAL_OUTPUT_LIST_MAXLEN", 1000)
SIGNAL_OUTPUT_STREAM_MAXLEN = env_int("SIGNAL_OUTPUT_STREAM_MAXLEN", 100_000)
# How long the markers that a tick entry's or a time-driven run's outputs were written outlive an unfinished batch
# (a finished batch deletes its entries' markers; the consumer group then says they are done).
SIGNAL_EMIT_ONCE_TTL_S = env_int("SIGNAL_EMIT_ONCE_TTL_S", 3600)
SIGNAL_CONFIG_STREAM = env_str("SIGNAL_CONFIG_STREAM", keys.config_stream())

# --- Auth ---------------------------------------------------------------------------------------------------
SIGNAL_JWT_SECRET = env_str("SIGNAL_JWT_SECRET", "dev-only-jwt-secret-change-me-0123456789" if DEBUG else "")
SIGNAL_JWT_PUBLIC_KEY = env_str("SIGNAL_JWT_PUBLIC_KEY", "")  # PEM text or a path to a PEM file (RS256)
SIGNAL_JWT_ISSUER = env_str("SIGNAL_JWT_ISSUER", "")
SIGNAL_JWT_AUDIENCE = env_str("SIGNAL_JWT_AUDIENCE", "")
SIGNAL_WRITE_SCOPE = env_str("SIGNAL_WRITE_SCOPE", "signals:write")
SIGNAL_API_RATE = env_str("SIGNAL_API_RATE", "1200/min")
# Per-user REST limits (webapi/quotas.py): a rate per kind of request (default SIGNAL_API_RATE) and daily request
# quotas per tier, the tier read from the token's SIGNAL_TIER_CLAIM.
SIGNAL_API_RATE_REALTIME = env_str("SIGNAL_API_RATE_REALTIME", SIGNAL_API_RATE)
SIGNAL_API_RATE_HISTORICAL = env_str("SIGNAL_API_RATE_HISTORICAL", SIGNAL_API_RATE)
SIGNAL_API_RATE_WRITES = env_str("SIGNAL_API_RATE_WRITES", SIGNAL_API_RATE)
SIGNAL_API_RATE_OTHER = env_str("SIGNAL_API_RATE_OTHER", SIGNAL_API_RATE)
SIGNAL_TIERS = env_str("SIGNAL_TIERS", "basic=50000,pro=500000,internal=0")
SIGNAL_DEFAULT_TIER = env_str("SIGNAL_DEFAULT_TIER", "basic")
SIGNAL_TIER_CLAIM = env_str("SIGNAL_TIER_CLAIM", "tier")
# API answers of at least this many bytes are compressed (brotli or gzip, as the client accepts)
SIGNAL_COMPRESS_MIN_BYTES = env_int("SIGNAL_COMPRESS_MIN_BYTES", 1024)
# Threads of a web process that answer the API's plain reads (webapi/lane.py); Django's requests use the loop's pool
SIGNAL_READ_LANE_THREADS = env_int("SIGNAL_READ_LANE_THREADS", 2)
SIGNAL_WS_MAX_CONNECTIONS_PER_USER = env_int("SIGNAL_WS_MAX_CONNECTIONS_PER_USER", 20)
# Per WebSocket connection: subscriptions, size of one inbound message, inbound messages per second (a bucket of
# SIGNAL_WS_MESSAGE_BURST), and how long a frame may wait in a slow reader's send queue before it is closed (4008).
SIGNAL_WS_MAX_SUBSCRIPTIONS = env_int("SIGNAL_WS_MAX_SUBSCRIPTIONS", 200)
SIGNAL_WS_MAX_MESSAGE_BYTES = env_int("SIGNAL_WS_MAX_MESSAGE_BYTES", 16_384)
SIGNAL_WS_MESSAGES_PER_S = env_float("SIGNAL_WS_MESSAGES_PER_S", 20.0)
SIGNAL_WS_MESSAGE_BURST = env_int("SIGNAL_WS_MESSAGE_BURST", 100)
SIGNAL_WS_SLOW_CLOSE_S = env_float("SIGNAL_WS_SLOW_CLOSE_S", 10.0)
# Retry-After (seconds) of a 503 answered while Redis or PostgreSQL is unreachable
SIGNAL_RETRY_AFTER_S = env_int("SIGNAL_RETRY_AFTER_S", 5)

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["webapi.auth.JWTAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["webapi.auth.IsPlatformUser"],
    "DEFAULT_THROTTLE_CLASSES": ["webapi.quotas.RateAndQuotaThrottle"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "webapi.errors.exception_handler",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    # JSON only: form and multipart bodies turn every field into a list, which no config or function can be
    "DEFAULT_PARSER_CLASSES": ["webapi.parsers.BoundedJSONParser"],
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Signal Service API",
    "DESCRIPTION": "Option Greeks, indicators, functions and moneyness views over market ticks.",
    "VERSION": "2.0.0",
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "SERVE_INCLUDE_SCHEMA": False,
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums", "webapi.schema.document_errors"],
}

# --- Process endpoints: each long-running process (bridge, worker, beat, config consumer) serves /metrics,
# /healthz and /readyz on this port (feed/probes.py); 0 serves none (the demo's web aggregates a shared
# PROMETHEUS_MULTIPROC_DIR instead). /healthz fails once the process's loop has not turned for MAX_AGE seconds.
SIGNAL_METRICS_PORT = env_int("SIGNAL_METRICS_PORT", 0)
SIGNAL_METRICS_HOST = env_str("SIGNAL_METRICS_HOST", "0.0.0.0")
SIGNAL_HEARTBEAT_MAX_AGE_S = env_float("SIGNAL_HEARTBEAT_MAX_AGE_S", 60.0)

# --- Logging: one JSON object per line on stdout, for every process -----------------------------------------
LOG_LEVEL = env_str("LOG_LEVEL", "INFO").upper()
LOGGING = logging_config(LOG_LEVEL)

# --- Configs ------------------------------------------------------------------------------------------------
# Config stream (SIGNAL_CONFIG_STREAM above): consumer group, dead letters, reclaim of dead consumers' entries.
SIGNAL_CONFIG_CONSUMER_GROUP = env_str("SIGNAL_CONFIG_CONSUMER_GROUP", "signal_config_service")
SIGNAL_CONFIG_DEAD_LETTER_STREAM = env_str("SIGNAL_CONFIG_DEAD_LETTER_STREAM", keys.dead_letters(SIGNAL_CONFIG_STREAM))
SIGNAL_CONFIG_BLOCK_MS = env_int("SIGNAL_CONFIG_BLOCK_MS", 1000)
SIGNAL_CONFIG_RECLAIM_IDLE_MS = env_int("SIGNAL_CONFIG_RECLAIM_IDLE_MS", 60_000)
SIGNAL_CONFIG_RECLAIM_INTERVAL_S = env_float("SIGNAL_CONFIG_RECLAIM_INTERVAL_S", 15.0)
SIGNAL_CONFIG_MAX_DELIVERIES = env_int("SIGNAL_CONFIG_MAX_DELIVERIES", 5)
# Time-driven configs: the queue their beat entries send to, and how long a crontab run may wait in it.
SIGNAL_SCHEDULED_QUEUE = env_str("SIGNAL_SCHEDULED_QUEUE", SIGNAL_DEFAULT_QUEUE)
SIGNAL_SCHEDULE_EXPIRE_S = env_int("SIGNAL_SCHEDULE_EXPIRE_S", 600)
# The pipeline stamps a config's last run (admin/API) at most this often per worker process.
SIGNAL_CONFIG_RUN_STAMP_S = env_float("SIGNAL_CONFIG_RUN_STAMP_S", 10.0)
# Exactly one celery-beat: the scheduler holds this Redis lock (renewed every loop); another beat stays idle
# (standby, takes over when the lock expires) or, with SIGNAL_BEAT_STANDBY=false, exits.
SIGNAL_BEAT_LOCK_KEY = env_str("SIGNAL_BEAT_LOCK_KEY", keys.beat_lock())
SIGNAL_BEAT_LOCK_TTL_S = env_float("SIGNAL_BEAT_LOCK_TTL_S", 30.0)
SIGNAL_BEAT_STANDBY = env_bool("SIGNAL_BEAT_STANDBY", True)
# External functions: sandbox worker processes per Celery/web process; a function killed this many times in a
# row is suspended for SIGNAL_EXTERNAL_SUSPEND_S (its results say so) instead of stalling every batch.
SIGNAL_SANDBOX_POOL_SIZE = env_int("SIGNAL_SANDBOX_POOL_SIZE", 2)
SIGNAL_EXTERNAL_MAX_KILLS = env_int("SIGNAL_EXTERNAL_MAX_KILLS", 3)
SIGNAL_EXTERNAL_SUSPEND_S = env_float("SIGNAL_EXTERNAL_SUSPEND_S", 60.0)

# --- Greeks -------------------------------------------------------------------------------------------------
# Option chains per underlying and expiry are read from the instrument registry at most this often per process.
SIGNAL_GREEKS_CHAIN_CACHE_S = env_float("SIGNAL_GREEKS_CHAIN_CACHE_S", 5.0)
# `compute_greeks` sends one Celery task per chunk of this many minutes to this queue.
SIGNAL_GREEKS_HISTORY_QUEUE = env_str("SIGNAL_GREEKS_HISTORY_QUEUE", SIGNAL_DEFAULT_QUEUE)
SIGNAL_GREEKS_HISTORY_CHUNK_MINUTES = env_int("SIGNAL_GREEKS_HISTORY_CHUNK_MINUTES", 30)
# Backtests (signals.backtest): their own queue, so a long replay never delays live batches; stored ticks per chunk
# (one task, one transaction with its checkpoint); a chunk whose underlying made no progress for this long is sent
# again (its worker died: the replay restarts from the checkpoint)
SIGNAL_BACKTEST_QUEUE = env_str("SIGNAL_BACKTEST_QUEUE", "backtest")
SIGNAL_BACKTEST_CHUNK_TICKS = env_int("SIGNAL_BACKTEST_CHUNK_TICKS", 5_000)
SIGNAL_BACKTEST_STALL_S = env_float("SIGNAL_BACKTEST_STALL_S", 120.0)
SIGNAL_BACKTEST_CHECK_S = env_float("SIGNAL_BACKTEST_CHECK_S", 30.0)  # beat's look for stalled chunks, seconds
SIGNAL_BACKTEST_TASK_S = env_float("SIGNAL_BACKTEST_TASK_S", 20.0)  # a task goes on to next chunks this long
# Largest number of points the historical Greeks / ATM IV endpoints return (the answer says "truncated").
SIGNAL_GREEKS_HISTORY_MAX_POINTS = env_int("SIGNAL_GREEKS_HISTORY_MAX_POINTS", 10_000)

# --- Bars and indicators ------------------------------------------------------------------------------------
# Redis bar cache (signals/bars/chunk_cache.py, read by signals/bars/store.py): closed bars per instrument, timeframe and chunk (exchange date).
SIGNAL_BARS_CACHE_TTL_S = env_int("SIGNAL_BARS_CACHE_TTL_S", 7 * 86_400)
SIGNAL_BARS_CACHE_MAX_CHUNKS = env_int("SIGNAL_BARS_CACHE_MAX_CHUNKS", 1500)  # per instrument+timeframe
SIGNAL_BARS_OPEN_TTL_S = env_int("SIGNAL_BARS_OPEN_TTL_S", 900)  # the still-open bar kept by queue_record
SIGNAL_BARS_TRACK_TTL_S = env_int("SIGNAL_BARS_TRACK_TTL_S", 120)  # tick high-water mark (late-tick detection)
# Instruments whose ticks are not reported to the bars service only cache bars this much older than their latest
# tick, so late ticks within the window still correct them.
SIGNAL_BARS_SETTLE_S = env_float("SIGNAL_BARS_SETTLE_S", 300.0)
# to size look-backs only: SESSION_OPEN to SESSION_CLOSE unless set
SIGNAL_BARS_SESSION_MINUTES = env_int("SIGNAL_BARS_SESSION_MINUTES", session_minutes(SESSION_OPEN, SESSION_CLOSE))
SIGNAL_BARS_MAX_LOOKBACK_DAYS = env_int("SIGNAL_BARS_MAX_LOOKBACK_DAYS", 3660)
SIGNAL_BARS_WORK_MEM_MB = env_int("SIGNAL_BARS_WORK_MEM_MB", 64)  # per bars query (sorting a month of ticks)
# One-minute bar rollup (plain PostgreSQL only, signals/bars/rollup.py): celery-beat folds the tick ranges recorded by the
# signal_ticks triggers into signal_bars_1m_rollup this often (readers fold in what is left for their instrument),
# at most SIGNAL_ROLLUP_MAX_RANGES ranges per transaction and for SIGNAL_ROLLUP_BUDGET_S per run.
SIGNAL_ROLLUP_INTERVAL_S = env_float("SIGNAL_ROLLUP_INTERVAL_S", 5.0)
SIGNAL_ROLLUP_MAX_RANGES = env_int("SIGNAL_ROLLUP_MAX_RANGES", 200)
SIGNAL_ROLLUP_BUDGET_S = env_float("SIGNAL_ROLLUP_BUDGET_S", 60.0)
SIGNAL_ROLLUP_QUEUE = env_str("SIGNAL_ROLLUP_QUEUE", SIGNAL_DEFAULT_QUEUE)
# Indicator warm-up: bars before the first value = max(MIN, FACTOR x the longest length parameter), capped.
SIGNAL_INDICATOR_WARMUP_FACTOR = env_int("SIGNAL_INDICATOR_WARMUP_FACTOR", 20)
SIGNAL_INDICATOR_WARMUP_MIN = env_int("SIGNAL_INDICATOR_WARMUP_MIN", 100)
SIGNAL_INDICATOR_WARMUP_MAX = env_int("SIGNAL_INDICATOR_WARMUP_MAX", 5000)
# History API limits.
SIGNAL_HISTORY_MAX_BARS = env_int("SIGNAL_HISTORY_MAX_BARS", 50_000)
SIGNAL_HISTORY_DEFAULT_BARS = env_int("SIGNAL_HISTORY_DEFAULT_BARS", 500)
# Discovery and stored results (signals/api/discovery.py, stored_api.py): a contract has live data while its latest
# tick is at most LIVE_DATA_MAX_AGE_S (tick time) older than its family's newest; realtime/price and realtime/greeks
# answer at most API_MAX_KEYS instruments per call; a level's history is priced from stored ticks when nothing was
# stored for it, over at most RECOMPUTE_MAX_HOURS.
SIGNAL_LIVE_DATA_MAX_AGE_S = env_float("SIGNAL_LIVE_DATA_MAX_AGE_S", 300.0)
SIGNAL_API_MAX_KEYS = env_int("SIGNAL_API_MAX_KEYS", 50)
SIGNAL_MONEYNESS_RECOMPUTE_MAX_HOURS = env_float("SIGNAL_MONEYNESS_RECOMPUTE_MAX_HOURS", 24.0)
# Retention (days; 0 keeps forever) of ticks, computed results and Greeks, and the age at which TimescaleDB
# compresses chunks (0: never): five years, compressed after a day. TimescaleDB enforces them with its policies (the
# retention task below brings the policies in line with these values), plain PostgreSQL with the retention task's
# chunked deletes (signals/bars/retention.py). import_history refuses ticks older than the tick retention.
SIGNAL_TICKS_RETENTION_DAYS = env_int("SIGNAL_TICKS_RETENTION_DAYS", 1826)
SIGNAL_COMPUTED_RETENTION_DAYS = env_int("SIGNAL_COMPUTED_RETENTION_DAYS", 1826)
SIGNAL_GREEKS_RETENTION_DAYS = env_int("SIGNAL_GREEKS_RETENTION_DAYS", 1826)
SIGNAL_COMPRESS_AFTER_DAYS = env_int("SIGNAL_COMPRESS_AFTER_DAYS", 1)
SIGNAL_RETENTION_INTERVAL_S = env_float("SIGNAL_RETENTION_INTERVAL_S", 3600.0)
SIGNAL_RETENTION_BUDGET_S = env_float("SIGNAL_RETENTION_BUDGET_S", 300.0)

# --- Celery: every CELERY_* setting, last because it names the queues and intervals set above ---------------
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", "redis://127.0.0.1:6379/1")
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json", "ticks-json"]  # ticks-json: tick batches (signals.ingest.codec)
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT", 120)
CELERY_TASK_SOFT_TIME_LIMIT = env_int("CELERY_TASK_SOFT_TIME_LIMIT", 100)
CELERY_TASK_DEFAULT_QUEUE = SIGNAL_DEFAULT_QUEUE
# Every task names its queue here (the bridge overrides process_ticks per underlying with SIGNAL_QUEUE_ROUTES).
CELERY_TASK_ROUTES = {
    "signals.process_ticks": {"queue": SIGNAL_DEFAULT_QUEUE},
    "signals.tasks.publish_stream_metrics": {"queue": SIGNAL_DEFAULT_QUEUE},
    "configs.run_scheduled": {"queue": SIGNAL_DEFAULT_QUEUE},
    "signals.greeks_history_chunk": {"queue": SIGNAL_GREEKS_HISTORY_QUEUE},
    "signals.backtest_chunk": {"queue": SIGNAL_BACKTEST_QUEUE},
    "signals.refresh_bar_rollup": {"queue": SIGNAL_ROLLUP_QUEUE},
    "signals.enforce_retention": {"queue": SIGNAL_ROLLUP_QUEUE},
}


def quorum_queues(broker_url: str) -> list[Queue] | None:
    """On RabbitMQ (an ``amqp://`` broker), every queue the service sends to as a quorum queue: replicated, and a
    message a dead worker held goes back to the queue at once (its connection closes; there is no visibility
    timeout). None on Redis (Celery's default queues)."""
    if broker_url.split("://", 1)[0] not in ("amqp", "amqps", "pyamqp"):
        return None
    names = {SIGNAL_DEFAULT_QUEUE, *SIGNAL_QUEUE_ROUTES.values(), SIGNAL_SCHEDULED_QUEUE, SIGNAL_GREEKS_HISTORY_QUEUE,
             SIGNAL_ROLLUP_QUEUE, SIGNAL_BACKTEST_QUEUE}
    return [Queue(name, routing_key=name, queue_arguments={"x-queue-type": "quorum"}) for name in sorted(names)]


CELERY_TASK_QUEUES = quorum_queues(CELERY_BROKER_URL)
# The worker's own endpoint and heartbeat (a bootstep on its event loop); beat imports it too, and ignores it.
CELERY_IMPORTS = ("signals.monitoring.worker_endpoint",)
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_WORKER_SEND_TASK_EVENTS = False
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# A message taken by a worker that dies is handed to another worker after this many seconds; it must exceed the
# longest task (the time limit) or a slow task would run twice. Live workers look for such messages every
# unacked_restore_interval x unacked_restore_throttle seconds (kombu's default is about 100 s).
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", 300),
    "unacked_restore_interval": env_int("CELERY_UNACKED_RESTORE_INTERVAL", 5),
    "unacked_restore_throttle": 1,
    "socket_timeout": 10,
    "socket_connect_timeout": 5,
}
# Celery's Django fix-up closes the database connection before and after every task unless this is set; a fresh
# connection per tick batch (plus its temporary COPY staging tables) costs more than the batch itself. Workers keep
# their connection for up to 2 x this many tasks; `signals.tasks` still drops an unusable or expired one
# (CONN_MAX_AGE) before each task, as Django does per request.
CELERY_DB_REUSE_MAX = env_int("CELERY_DB_REUSE_MAX", 1000)
CELERY_TIMEZONE = EXCHANGE_TIMEZONE
# One active beat (signals.schedule.beat, lock SIGNAL_BEAT_LOCK_KEY), renewing its lock every loop: at most
# CELERY_BEAT_MAX_LOOP_INTERVAL seconds apart.
CELERY_BEAT_SCHEDULER = "signals.schedule.beat:SingleBeatScheduler"
CELERY_BEAT_MAX_LOOP_INTERVAL = env_int("CELERY_BEAT_MAX_LOOP_INTERVAL", 5)
CELERY_BEAT_SCHEDULE = {
    "publish-stream-metrics": {"task": "signals.tasks.publish_stream_metrics",
                               "schedule": env_float("SIGNAL_METRICS_INTERVAL_S", 15.0),
                               "options": {"queue": SIGNAL_DEFAULT_QUEUE, "expires": 60}},
    "refresh-bar-rollup": {"task": "signals.refresh_bar_rollup", "schedule": SIGNAL_ROLLUP_INTERVAL_S,
                           "options": {"queue": SIGNAL_ROLLUP_QUEUE,
                                       "expires": max(2 * SIGNAL_ROLLUP_INTERVAL_S, 10.0)}},
    "backtest-resume-stalled": {"task": "signals.backtest_resume_stalled", "schedule": SIGNAL_BACKTEST_CHECK_S,
                                "options": {"queue": SIGNAL_DEFAULT_QUEUE, "expires": 2 * SIGNAL_BACKTEST_CHECK_S}},
    "enforce-retention": {"task": "signals.enforce_retention", "schedule": SIGNAL_RETENTION_INTERVAL_S,
                          "options": {"queue": SIGNAL_ROLLUP_QUEUE, "expires": SIGNAL_RETENTION_INTERVAL_S}},
}
DJANGO_CELERY_BEAT_TZ_AWARE = True
