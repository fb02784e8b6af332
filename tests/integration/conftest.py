"""Fixtures the end-to-end tests share: two gevent workers on the session's Redis, and a publishing user."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from support.gunicorn import Gunicorn
from support.service import dev_token, service_env


@pytest.fixture
def server(redis_url: str) -> Iterator[Gunicorn]:
    with Gunicorn(workers=2, env=service_env(redis_url)) as g:
        yield g


@pytest.fixture
def alice(server: Gunicorn) -> str:
    return dev_token(server.base_url, "alice", ["channel:*"], ["publish:events"])
