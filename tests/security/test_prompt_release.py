"""A client's close frees its connection slot and presence at once, not at the next heartbeat.

Real gunicorn (2 gevent workers) on a real Redis with the default 15 s heartbeat:
before, a closed stream held its lease and presence until a heartbeat write
failed (~30 s), so three quick reloads made the fourth a 429. Long-polls take a
slot from the same per-user cap while they wait. Also `python app.py` (pywsgi,
in-memory bus): the same watcher applies there.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import gevent
import pytest
from support.http_json import get_json, request
from support.procs import REPO_ROOT, free_port, spawn, tail, terminate_tree, wait_until
from support.service import bearer, dev_token
from support.sse_client import SSEClient

from .conftest import Deployment, start_deployment

CAP = 3
RELEASE_DEADLINE = 5.0  # polled; the service's own bound is 2 s (docs/SECURITY.md)


@pytest.fixture(scope="module")
def slow_beat(redis_binary: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    env = {"HEARTBEAT_INTERVAL": "15", "MAX_CONNECTIONS_PER_USER": str(CAP), "PRESENCE_GRACE": "0", "LEASE_TTL": "60",
           "RATE_LIMIT_POLL": "1000/minute"}
    with ExitStack() as stack:
        yield start_deployment(stack, redis_binary, tmp_path_factory.mktemp("release"), **env)


def leases(d: Deployment, user: str) -> int:
    with d.redis.client() as client:
        return int(client.zcard(f"cg:c:{{{user}}}"))


def online(d: Deployment, token: str, channel: str) -> list[str]:
    status, _, body = get_json(f"{d.base}/presence/{channel}", bearer(token))
    assert status == 200, body
    return body["users"]


def open_stream(d: Deployment, token: str, channel: str) -> SSEClient:
    client = d.stream(token, f"channels={channel}")
    assert client.status == 200, client.json_body(2)
    assert client.next(5).event == "system.connected"
    return client


def test_closing_the_socket_releases_lease_and_presence_promptly(slow_beat: Deployment, user: str):
    channel = f"channel:bye-{user[-6:]}"
    token = slow_beat.token(user, (channel,))
    client = open_stream(slow_beat, token, channel)
    wait_until(lambda: online(slow_beat, token, channel) == [user], 5, 0.1, "online")
    assert leases(slow_beat, user) == 1
    client.close()
    wait_until(lambda: leases(slow_beat, user) == 0, RELEASE_DEADLINE, 0.05, "lease released")
    wait_until(lambda: online(slow_beat, token, channel) == [], RELEASE_DEADLINE, 0.1, "presence gone")
    close = next(r for r in slow_beat.logs("connection.close") if r.get("user_id") == user)
    assert close["reason"] == "client_closed"


def test_three_quick_reloads_leave_room_for_a_fourth(slow_beat: Deployment, user: str):
    channel = f"channel:reload-{user[-6:]}"
    token = slow_beat.token(user, (channel,))
    for _ in range(CAP):  # each "reload": the page's stream closes and the new page opens one
        open_stream(slow_beat, token, channel).close()

    def fourth() -> SSEClient | None:
        client = slow_beat.stream(token, f"channels={channel}")
        if client.status == 200:
            return client
        assert client.status == 429, client.status
        client.close()
        return None

    client = wait_until(fourth, RELEASE_DEADLINE, 0.1, "a fourth stream within the limit")
    client.close()


def test_waiting_long_polls_count_against_the_same_cap(slow_beat: Deployment, user: str):
    channel = f"channel:polls-{user[-6:]}"
    token = slow_beat.token(user, (channel,))
    status, _, head = get_json(f"{slow_beat.base}/poll?channels={channel}", bearer(token))
    assert status == 200
    url = f"{slow_beat.base}/poll?channels={channel}&cursor={head['cursor']}&timeout=3"
    polls = [gevent.spawn(get_json, url, bearer(token)) for _ in range(CAP)]
    wait_until(lambda: leases(slow_beat, user) == CAP, 5, 0.05, "every waiting poll holds a slot")
    over = request("GET", url, headers=bearer(token))
    assert over.status == 429 and over.json()["error"] == "connection_limit", over.text
    stream = slow_beat.stream(token, f"channels={channel}")
    assert stream.status == 429
    stream.close()
    gevent.joinall(polls, timeout=10)
    assert [p.value[0] for p in polls] == [200] * CAP
    wait_until(lambda: leases(slow_beat, user) == 0, RELEASE_DEADLINE, 0.05, "slots back after the polls")


@pytest.fixture
def embedded(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    env = {"BIND": f"127.0.0.1:{port}", "PATH": "/usr/bin:/bin", "MAX_CONNECTIONS_PER_USER": "1",
           "PRESENCE_GRACE": "0", "HEARTBEAT_INTERVAL": "15"}
    log = tmp_path / "app.log"
    proc = spawn([sys.executable, "app.py"], log, REPO_ROOT, env)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: get_json(f"{base}/healthz")[0] == 200, 15, ignore=(OSError,))
        yield base
    except AssertionError:
        raise AssertionError(tail(log)) from None
    finally:
        terminate_tree(proc, signal.SIGTERM, 10)


def test_embedded_server_releases_the_slot_when_the_client_closes(embedded: str):
    token = dev_token(embedded, "solo", ["channel:*"])
    channel = "channel:embedded-bye"
    client = SSEClient(f"{embedded}/stream?channels={channel}", bearer(token))
    assert client.status == 200 and client.next(5).event == "system.connected"
    wait_until(lambda: get_json(f"{embedded}/presence/{channel}", bearer(token))[2]["users"] == ["solo"], 5, 0.1)
    client.close()
    wait_until(lambda: get_json(f"{embedded}/presence/{channel}", bearer(token))[2]["users"] == [], RELEASE_DEADLINE, 0.1,
               "presence gone")

    def again() -> SSEClient | None:
        client = SSEClient(f"{embedded}/stream?channels={channel}", bearer(token))
        if client.status == 200:
            return client
        client.close()
        return None

    wait_until(again, RELEASE_DEADLINE, 0.1, "the one slot is free again").close()
