"""Shared fixtures. Every test talks to the real PostgreSQL and Redis; the Celery worker is a real process."""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import jwt
import pytest
import redis as redis_lib
from django.conf import settings

from tests.support import WorkerProcess
from webapi.lane import end_lane_threads

# The cluster tests need the data Redis to be a Redis Cluster (`make test-cluster`, run by `make test` after this).
collect_ignore = [] if settings.REDIS_CLUSTER else ["test_cluster.py"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The browser tests last: Playwright's session keeps an event loop in the main thread until the run ends,
    and the asyncio tests cannot start their own while it is there."""
    items.sort(key=lambda item: "tests/browser/" in item.nodeid)


@pytest.fixture(autouse=True)
def clean_redis() -> Iterator[None]:
    """Each test starts with empty test Redis databases and fresh per-process caches."""
    from configs.registry import registry
    from feed.redis_client import get_redis
    from signals import instrument_registry

    get_redis().flushdb()  # every node of a cluster
    for url in {settings.CHANNEL_LAYER_URL, settings.CELERY_BROKER_URL} - {settings.REDIS_URL}:
        if url.startswith("redis"):
            redis_lib.Redis.from_url(url).flushdb()
    registry.forget()
    instrument_registry.clear_caches()  # per-process caches of rows each test's rollback removes
    yield


@pytest.fixture
def r() -> redis_lib.Redis:
    from feed.redis_client import get_redis

    return get_redis()


@pytest.fixture
def make_token() -> Callable[..., str]:
    def make(sub: str = "trader-1", scope: str = "", ttl: int = 600, **claims: Any) -> str:
        body = {"sub": sub, "exp": int(time.time()) + ttl, "scope": scope, **claims}
        return jwt.encode(body, settings.SIGNAL_JWT_SECRET, algorithm="HS256")

    return make


@pytest.fixture
def auth_client(make_token: Callable[..., str]) -> Any:
    from rest_framework.test import APIClient

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {make_token(scope='signals:write')}")
    return client


@pytest.fixture
def start_worker() -> Iterator[Callable[..., WorkerProcess]]:
    workers: list[WorkerProcess] = []

    def start(queues: str, **kwargs: Any) -> WorkerProcess:
        worker = WorkerProcess(queues, **kwargs)
        workers.append(worker)
        worker.wait_ready()
        return worker

    yield start
    for worker in workers:
        worker.stop()


@pytest.fixture
async def pool_threads_end() -> AsyncIterator[None]:
    """The threads that answered the test's requests (the loop's pool and the read lane's) end with it, and their
    database connections with them (else the test database cannot be dropped at the end of the session). A
    thread's connection is freed with a reference cycle, which the web process's collector policy
    (signal_project.gc_policy) leaves for a while."""
    yield
    await asyncio.get_running_loop().shutdown_default_executor()
    end_lane_threads()
    gc.collect()
