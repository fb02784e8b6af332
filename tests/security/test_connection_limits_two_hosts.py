"""MAX_CONNECTIONS_PER_USER across two hosts: two gunicorn instances on one Redis share one cap.

The leases live in Redis, so the cap is per user wherever the streams land; a
host that dies outright (SIGKILL of its whole process tree) gives its slots
back within LEASE_TTL.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import ExitStack

import psutil
import pytest
from support.gunicorn import Gunicorn
from support.procs import wait_until
from support.sse_client import SSEClient

from .conftest import Deployment, security_env
from .test_connection_limits import LEASE_TTL


@pytest.fixture
def second_host(deployment: Deployment, tmp_path) -> Iterator[Gunicorn]:
    """Another gunicorn with the same settings on the deployment's Redis and JWKS."""
    with Gunicorn(workers=2, env=security_env(deployment.redis.url, deployment.jwks), workdir=tmp_path / "host-b") as host:
        yield host


def stream(base: str, token: str) -> SSEClient:
    return SSEClient(f"{base}/stream?channels=channel:general", {"Authorization": f"Bearer {token}"}, timeout=10)


def opened(base: str, token: str) -> SSEClient:
    client = stream(base, token)
    assert client.status == 200, client.json_body()
    assert client.next(5).event == "system.connected"
    return client


def held(base: str, token: str) -> SSEClient | None:
    """A new open stream, or None if the cap refused it."""
    client = stream(base, token)
    if client.status == 200:
        return client
    assert client.status == 429 and client.json_body()["error"] == "connection_limit", client.json_body()
    client.close()
    return None


def refused(base: str, token: str) -> bool:
    client = stream(base, token)
    try:
        if client.status == 200:
            return False
        body = client.json_body()
        assert client.status == 429 and body["error"] == "connection_limit" and body["limit"] == 2, body
        return True
    finally:
        client.close()


def test_the_cap_holds_across_two_hosts_and_a_close_on_one_frees_a_slot_on_the_other(deployment: Deployment,
                                                                                       second_host: Gunicorn, user: str):
    a, b = deployment.base, second_host.base_url
    token = deployment.token(user)
    with ExitStack() as stack:
        on_a = stack.enter_context(opened(a, token))
        on_b = stack.enter_context(opened(b, token))
        for _ in range(3):  # several connects per host, so both of each host's workers are likely asked
            assert refused(a, token), "a third stream on host A"
            assert refused(b, token), "a third stream on host B"
        on_b.close()
        stack.enter_context(wait_until(lambda: held(a, token), 5, 0.1, "the slot freed on B is usable on A"))
        assert refused(b, token) and refused(a, token)
        assert on_a.status == 200


def test_a_host_killed_outright_gives_its_slots_back_within_the_lease_ttl(deployment: Deployment,
                                                                           second_host: Gunicorn, user: str):
    a, b = deployment.base, second_host.base_url
    token = deployment.token(user)
    with ExitStack() as stack:
        stack.enter_context(opened(b, token))
        stack.enter_context(opened(b, token))
        assert refused(a, token)
        # The whole host dies at once: no drain, no release; only the leases' TTL frees the slots.
        tree = [psutil.Process(second_host.master_pid), *(psutil.Process(pid) for pid in second_host.worker_pids())]
        for proc in tree:
            proc.send_signal(signal.SIGKILL)
        psutil.wait_procs(tree, timeout=5)
        assert refused(a, token), "the dead host's slots stay taken until their leases expire"
        wait_until(lambda: not refused(a, token), LEASE_TTL + 3, 0.1, "host B's leases expired")
