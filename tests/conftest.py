"""Shared fixtures: real Redis processes, the repo root, and cleanup that survives failures.

`tests/` (for `support.*`) and the repo root (for `chatgenius`) are put on
sys.path by `pythonpath` in pytest.ini.
"""

from __future__ import annotations

# The service is gevent code (the Redis bus reader is a greenlet): patch before anything opens a socket.
from gevent import monkey

monkey.patch_all()

import os  # noqa: E402
import shutil  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402
from contextlib import ExitStack  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import pytest  # noqa: E402
from playwright.sync_api import Browser, sync_playwright  # noqa: E402
from support.procs import REPO_ROOT, find_redis_server, free_port, require_binary  # noqa: E402
from support.redis_server import RedisServer  # noqa: E402

# Under CI (any truthy CI) a run that skipped anything fails: see support/ci_guard.py.
pytest_plugins = ["support.ci_guard", "support.cluster_fixtures"]


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def redis_binary() -> str:
    """A runnable redis-server; skips locally, fails under CI, if there is none."""
    return require_binary("redis-server", find_redis_server())


@pytest.fixture(scope="session")
def redis_server(redis_binary: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One private Redis for the session; tests that kill or pause Redis use make_redis."""
    server = RedisServer(binary=redis_binary, workdir=tmp_path_factory.mktemp("redis"))
    with server:
        yield server


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The session Redis, emptied (and revived if a test broke it) before each test."""
    if redis_server.paused:
        redis_server.resume()
    if not redis_server.running:
        redis_server.start()
    with redis_server.client() as client:
        client.flushall()
    return redis_server.url


@pytest.fixture
def make_redis(redis_binary: str, tmp_path: Path) -> Iterator[Callable[..., RedisServer]]:
    """Factory for private, started RedisServers; all are stopped after the test, pass or fail."""
    with ExitStack() as stack:  # closes every server even if one close() raises

        def make(**kwargs: Any) -> RedisServer:
            kwargs.setdefault("binary", redis_binary)
            kwargs.setdefault("workdir", tmp_path / f"redis-{free_port()}")
            server = RedisServer(**kwargs)
            stack.callback(server.close)
            return server.start()

        yield make


# -- Chromium: one headless browser per session, shared by every suite that drives one ----------
# (Playwright's sync API keeps one event loop per process: a second sync_playwright() in the same
# session fails with "using Playwright Sync API inside the asyncio loop"; see tests/browser/conftest.py
# for why the sync API and gevent's monkey patching compose.)

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's Chromium; skips locally, fails under CI, when it is missing."""
    path = "/usr/bin/chromium" if os.access("/usr/bin/chromium", os.X_OK) else shutil.which("chromium")
    return require_binary("chromium", path)


@pytest.fixture(scope="session")
def browser(chromium: str) -> Iterator[Browser]:
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def socket_pair() -> Iterator[tuple[Any, Any]]:
    """A connected pair of gevent sockets (patched above): the OS socket under one is non-blocking,
    as under gunicorn, so a GunicornSocket can be built on it."""
    import socket

    server, client = socket.socketpair()
    yield server, client
    server.close()
    client.close()
