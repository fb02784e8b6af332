"""The production shape for real: several gunicorn hosts on one Redis behind the shipped nginx.conf.

One deployment per module (starting it is most of the cost); tests keep apart
by using their own users and channels, never by flushing the shared Redis.
Every process is stopped by the ExitStack, also when a test or a start fails.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest
from support.gunicorn import Gunicorn
from support.nginx import NGINX, Nginx
from support.procs import REPO_ROOT, require_binary
from support.redis_server import RedisServer
from support.service import dev_token, service_env

NGINX_CONF = REPO_ROOT / "deploy" / "nginx.conf"


@dataclass
class Deployment:
    """N gunicorn hosts (one worker each) sharing `redis`, behind one nginx."""

    redis: RedisServer
    hosts: list[Gunicorn]
    nginx: Nginx

    @property
    def base(self) -> str:
        return self.nginx.base_url

    def token(self, sub: str, channels: list[str] | None = None) -> str:
        """A dev token that may read `channels` (default: every channel:*) and publish."""
        return dev_token(self.base, sub, channels or ["channel:*"], ["publish:events"])

    def host_of(self, connection_id: str) -> int:
        """Index of the host that logged `connection.open` for this stream."""
        for index, host in enumerate(self.hosts):
            if any(r.get("event") == "connection.open" and r.get("connection_id") == connection_id for r in host.json_logs()):
                return index
        return -1


@pytest.fixture(scope="session")
def nginx_binary() -> str:
    return require_binary("nginx", NGINX)


def start_deployment(stack: ExitStack, redis_binary: str, workdir: Path, hosts: int, **env: str) -> Deployment:
    redis = stack.enter_context(RedisServer(binary=redis_binary, workdir=workdir / "redis"))
    environment = service_env(
        redis.url, MAX_CONNECTIONS_PER_USER="50", RATE_LIMIT_CONNECT="1000/minute", RATE_LIMIT_POLL="1000/minute", **env,
    )
    started = []
    for n in range(hosts):
        started.append(stack.enter_context(Gunicorn(workers=1, env=environment, workdir=workdir / f"host{n}")))
    proxy = stack.enter_context(Nginx(NGINX_CONF, [h.port for h in started], workdir=workdir / "nginx"))
    return Deployment(redis, started, proxy)


@pytest.fixture(scope="module")
def deployment(nginx_binary: str, redis_binary: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """Two hosts behind nginx, ENABLE_COMPRESSION on, HEARTBEAT_INTERVAL=1."""
    with ExitStack() as stack:
        yield start_deployment(stack, redis_binary, tmp_path_factory.mktemp("deploy"), 2, ENABLE_COMPRESSION="true")


def connected_info(client) -> dict:
    frame = client.next(5)
    assert frame is not None and frame.event == "system.connected", frame
    return json.loads(frame.data)


def next_message(client, timeout: float):
    """The next message.* event (presence and other traffic on the channel skipped), or None in time."""
    try:
        return client.read_until(lambda f: f.event.startswith("message."), timeout=timeout)
    except AssertionError:
        return None


def messages(client, n: int, timeout: float) -> list:
    """Exactly the next `n` message.* events; AssertionError if they do not all arrive in time."""
    deadline = time.monotonic() + timeout
    got = []
    while len(got) < n:
        frame = next_message(client, max(0.0, deadline - time.monotonic()))
        assert frame is not None, f"{len(got)}/{n} messages in {timeout} s: {got!r}"
        got.append(frame)
    return got
