"""MAX_CONNECTIONS_PER_USER across workers: leases in Redis, freed on close, expiring after a SIGKILL."""

from __future__ import annotations

import time
from contextlib import ExitStack

from support.http_json import request
from support.procs import wait_until
from support.sse_client import SSEClient

from .conftest import Deployment

LEASE_TTL = 3.0  # this deployment's LEASE_TTL


def open_stream(deployment: Deployment, token: str) -> SSEClient:
    client = deployment.stream(token, "channels=channel:general")
    assert client.status == 200, client.json_body()
    assert client.next(5).event == "system.connected"
    return client


def try_open(deployment: Deployment, token: str) -> SSEClient | None:
    """A new stream if a slot is free, else None after checking the refusal is the connection limit."""
    client = deployment.stream(token, "channels=channel:general")
    if client.status == 200:
        return client
    assert client.status == 429, client.json_body()
    body = client.json_body()
    assert body["error"] == "connection_limit" and body["limit"] == 2
    assert 1 <= int(client.headers["Retry-After"]) <= LEASE_TTL
    client.close()
    return None


def pid_of(deployment: Deployment, client: SSEClient) -> int:
    cid = client.frames[0].json()["connection_id"]
    return wait_until(lambda: [r["pid"] for r in deployment.logs("connection.open") if r.get("connection_id") == cid], 5)[0]


def test_third_stream_is_refused_on_any_worker_and_a_close_frees_a_slot(deployment: Deployment, user: str):
    token = deployment.token(user)
    with ExitStack() as stack:
        held = [stack.enter_context(open_stream(deployment, token)) for _ in range(2)]
        opened = time.monotonic()
        holders = {pid_of(deployment, c) for c in held}
        refusers: set[int] = set()
        # New connections until both workers have taken part (gevent accepts greedily) and the
        # leases have outlived their TTL twice over: the refresher keeps open streams counted.
        for _ in range(200):
            assert try_open(deployment, token) is None
            refusers = {r["pid"] for r in deployment.logs("connection.reject") if r.get("user_id") == user}
            if len(holders | refusers) == 2 and time.monotonic() - opened > 2 * LEASE_TTL:
                break
            time.sleep(0.05)
        assert len(holders | refusers) == 2, "the cap was not exercised across both workers"
        assert time.monotonic() - opened > 2 * LEASE_TTL
        assert all(r.get("reason") == "connection_limit" for r in deployment.logs("connection.reject") if r.get("user_id") == user)

        held[0].close()
        started = time.monotonic()
        third = wait_until(lambda: try_open(deployment, token), 5, 0.1, "a slot freed after close")
        stack.enter_context(third)
        assert time.monotonic() - started < 4  # noticed at the next heartbeat (1 s), then released
        assert try_open(deployment, token) is None  # and it is full again


def test_sigkill_of_a_worker_frees_its_slots_within_the_lease_ttl(deployment: Deployment, user: str):
    token = deployment.token(user)
    with ExitStack() as stack:
        held = [stack.enter_context(open_stream(deployment, token)) for _ in range(2)]
        victim = pid_of(deployment, held[0])
        deployment.server.kill_worker(victim)
        killed = time.monotonic()
        # Nobody released the dead worker's lease: the user stays full until it expires.
        assert try_open(deployment, token) is None
        fresh = wait_until(lambda: try_open(deployment, token), LEASE_TTL + 3, 0.1, "the dead worker's lease expired")
        stack.enter_context(fresh)
        elapsed = time.monotonic() - killed
        assert elapsed <= LEASE_TTL + 1.5, elapsed
    wait_until(lambda: len(deployment.server.worker_pids()) == 2, 15, message="gunicorn replaced the killed worker")


def test_a_stream_never_served_gives_its_slot_back(deployment: Deployment, user: str):
    # HEAD sends no body: it must not keep a lease (or a subscriber); it opens none at all.
    token = deployment.token(user)
    for _ in range(3):
        resp = request("HEAD", deployment.base + "/stream?channels=channel:general", None, {"Authorization": f"Bearer {token}"})
        assert resp.status == 200 and resp.body == b""
    assert not [r for r in deployment.logs("connection.open") if r.get("user_id") == user]
    with ExitStack() as stack:
        for _ in range(2):
            stack.enter_context(open_stream(deployment, token))
