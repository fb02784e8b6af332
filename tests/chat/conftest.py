"""Fixtures of the chat tests: a private Redis and two gunicorn "hosts" on it, shared by the package.

Tests sharing them use their own users and channels; tests that flip global state
(flags, signals, SIGKILL) start their own instances.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from support.gunicorn import Gunicorn
from support.redis_server import RedisServer

from .helpers import host

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
