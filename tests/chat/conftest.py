"""Fixtures of the chat tests: a private Redis and two gunicorn "hosts" on it, shared by the package.

Tests sharing them use their own users and channels; tests that flip global state
(flags, signals, SIGKILL) start their own instances, on `store`: once on one Redis,
once on Redis Cluster.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from support.gunicorn import Gunicorn
from support.redis_server import RedisServer

from .helpers import Store, host

# Short enough for quick tests, long enough that a reconnect fits in the grace.
PRESENCE_ENV = {"PRESENCE_GRACE": "1.5", "LEASE_TTL": "2"}


@pytest.fixture(scope="package")
def module_redis(redis_binary: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(binary=redis_binary, workdir=Path(tmp_path_factory.mktemp("chat-redis")))
    with server:
        yield server


@pytest.fixture(scope="package")
def hosts(module_redis: RedisServer) -> Iterator[tuple[Gunicorn, Gunicorn]]:
    """Two instances, two workers each, sharing one Redis: hosts A and B."""
    a, b = host(module_redis.url, **PRESENCE_ENV), host(module_redis.url, **PRESENCE_ENV)
    with a, b:
        yield a, b


@pytest.fixture(params=["redis", "cluster"])
def store(request: pytest.FixtureRequest) -> Store:
    """A store of the test's own, once per backend: a private Redis, or the session cluster emptied."""
    if request.param == "redis":
        server = request.getfixturevalue("make_redis")()
        return Store({"REDIS_URL": server.url}, lambda: redis.Redis.from_url(server.url))
    cluster = request.getfixturevalue("redis_cluster")
    return Store({"REDIS_CLUSTER_NODES": request.getfixturevalue("redis_cluster_nodes")}, cluster.client, cluster)
