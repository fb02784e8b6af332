"""pytest fixtures for the Redis Cluster runner (registered in tests/conftest.py's pytest_plugins).

`redis_cluster` is one cluster per session, emptied before each test that asks
for `redis_cluster_nodes`; tests that kill a master build their own with
`make_redis_cluster`, so the shared one never loses a node.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from .procs import free_port, require_binary
from .redis_cluster import RedisCluster, find_redis_cli


@pytest.fixture(scope="session")
def redis_cli(redis_binary: str) -> str:
    """A redis-cli for `--cluster create`; skips locally, fails under CI, if there is none."""
    return require_binary("redis-cli", find_redis_cli(redis_binary))


@pytest.fixture(scope="session")
def redis_cluster(redis_binary: str, redis_cli: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    """Three masters with a replica each, shared by the session; never kill its nodes."""
    with RedisCluster(binary=redis_binary, cli=redis_cli, workdir=tmp_path_factory.mktemp("cluster")) as cluster:
        yield cluster


@pytest.fixture
def redis_cluster_nodes(redis_cluster: RedisCluster) -> str:
    """The session cluster, emptied, as a REDIS_CLUSTER_NODES value."""
    redis_cluster.flushall()
    return redis_cluster.startup_nodes


@pytest.fixture
def make_redis_cluster(redis_binary: str, redis_cli: str, tmp_path: Path) -> Iterator[Callable[..., RedisCluster]]:
    """Factory for private, started clusters (for kill -9 tests); all are stopped after the test."""
    with ExitStack() as stack:

        def make(**kwargs: Any) -> RedisCluster:
            kwargs.setdefault("workdir", tmp_path / f"cluster-{free_port()}")
            cluster = RedisCluster(binary=redis_binary, cli=redis_cli, **kwargs)
            stack.callback(cluster.close)
            return cluster.start()

        yield make
