"""chatgenius.close(app): an app is created and closed without leaving greenlets or Redis connections behind."""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator

import gevent
import pytest
from flask import Flask
from support.procs import wait_until
from support.redis_server import RedisServer

import chatgenius
from chatgenius.factory import create_app

CHAN = "channel:life"


def running_loops() -> list[str]:
    """Live greenlets running code of the service (the bus reader, the ticker, background.Every loops)."""
    found = []
    for obj in gc.get_objects():
        if isinstance(obj, gevent.Greenlet) and not obj.dead:
            run = getattr(obj, "_run", None)
            target = getattr(run, "__self__", run)
            module = getattr(type(target) if target is not run else run, "__module__", "") or ""
            if module.startswith("chatgenius"):
                found.append(getattr(run, "__qualname__", repr(run)))
    return found


def clients(server: RedisServer) -> int:
    """Connections the server holds, this one's excepted."""
    with server.client() as probe:
        return len(probe.client_list()) - 1


@pytest.fixture(params=["memory", "redis"])
def env(request) -> Iterator[dict[str, str]]:
    env = {"AUTH_MODE": "dev", "BIND": "127.0.0.1:8000", "HEARTBEAT_INTERVAL": "0.2", "LEASE_TTL": "1"}
    if request.param == "redis":
        env["REDIS_URL"] = request.getfixturevalue("redis_url")
    yield env


def use(app: Flask) -> None:
    """Start everything a worker runs: a lease (its refresher), a stream, a publish."""
    client = app.test_client()
    claims = {"sub": "life", "channels": ["channel:*"], "permissions": ["publish:events"]}
    auth = {"Authorization": "Bearer " + client.post("/dev/token", json=claims).json["token"]}
    resp = client.get(f"/stream?channels={CHAN}", headers=auth, buffered=False)
    body = iter(resp.response)
    assert b"system.connected" in next(body)
    assert client.post("/events", json={"channel": CHAN, "type": "message.created", "data": {}}, headers=auth).status_code == 201
    resp.close()


def test_closing_an_app_stops_every_greenlet_it_started(env: dict[str, str]) -> None:
    before = running_loops()
    app = create_app(env=env)
    rt = app.extensions["chatgenius"]
    wait_until(lambda: rt.bus.health() is None, 5, message="bus reader connected")
    use(app)
    assert len(running_loops()) > len(before)  # the reader (Redis), ticker, sampler, refreshers, sweeper
    chatgenius.close(app)
    chatgenius.close(app)  # idempotent
    assert running_loops() == before


def test_closing_an_app_releases_its_redis_connections(make_redis: Callable[..., RedisServer]) -> None:
    server = make_redis()  # its own server: no other test's connections in the count
    app = create_app(env={"AUTH_MODE": "dev", "REDIS_URL": server.url, "HEARTBEAT_INTERVAL": "0.2"})
    wait_until(lambda: app.extensions["chatgenius"].bus.health() is None, 5, message="bus reader connected")
    use(app)
    assert clients(server) > 0
    chatgenius.close(app)
    wait_until(lambda: clients(server) == 0, 5, message="the app's connections closed")
