"""Redis turned read-only under a running deployment (a failover's demoted primary): every write is a 503.

Real gunicorn (2 gevent workers), a local JWKS, and a private redis-server made a
replica of another private one (`REPLICAOF`), so each write gets `READONLY` (or
EXECABORT inside MULTI) while reads still work. Every endpoint that writes must
answer 503 `bus_unavailable` JSON with Retry-After, never 500; once the server is
a primary again (`REPLICAOF NO ONE`) the same requests succeed.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from support.http_json import Response, request
from support.procs import wait_until
from support.redis_server import RedisServer
from support.sse_client import SSEClient

from chatgenius.redis_errors import is_unavailable

from .conftest import Deployment, start_deployment

CHANNEL = "channel:readonly"


@pytest.fixture
def deployment(redis_binary: str, tmp_path: Path) -> Iterator[Deployment]:
    with ExitStack() as stack:
        yield start_deployment(stack, redis_binary, tmp_path, MAX_CONNECTIONS_PER_USER="10", RATE_LIMIT_POLL="1000/minute")


def make_read_only(server: RedisServer, primary: RedisServer) -> None:
    with server.client() as client:
        client.execute_command("REPLICAOF", "127.0.0.1", str(primary.port))
        wait_until(lambda: client.info("replication").get("master_link_status") == "up", 10, 0.1, "replica in sync")


def make_primary(server: RedisServer) -> None:
    with server.client() as client:
        client.execute_command("REPLICAOF", "NO", "ONE")


def writes(d: Deployment, stream_id: str, ticket: str) -> dict[str, Callable[[], Response]]:
    """Every endpoint that writes to Redis, as the request a client would send."""
    user = d.token("readonly-user", ("channel:*",))
    admin = d.token("readonly-admin", ("channel:*",), ("admin:sse", "publish:events"))
    json_ = {"Content-Type": "application/json"}

    def call(method: str, path: str, token: str | None, body: str | None = None) -> Callable[[], Response]:
        headers = {**json_, **({"Authorization": f"Bearer {token}"} if token else {})}
        return lambda: request(method, d.base + path, body.encode() if body is not None else None, headers)

    event = f'{{"channel":"{CHANNEL}","type":"message.created","data":{{}}}}'
    return {
        "POST /tickets": call("POST", "/tickets", user, ""),
        "GET /stream?ticket=": call("GET", f"/stream?channels={CHANNEL}&ticket={ticket}", None),
        "GET /stream (lease)": call("GET", f"/stream?channels={CHANNEL}", user),
        "POST /events": call("POST", "/events", admin, event),
        "POST /typing": call("POST", "/typing", user, f'{{"channel":"{CHANNEL}"}}'),
        "POST /subscriptions": call("POST", "/subscriptions", admin, f'{{"connection_id":"{stream_id}","subscribe":["channel:other"]}}'),
        "PUT /admin/flags": call("PUT", "/admin/flags", admin, '{"ENABLE_COMPRESSION":null}'),
        "DELETE /admin/connections/<id>": call("DELETE", f"/admin/connections/{stream_id}", admin),
    }


def test_every_write_answers_503_json_while_redis_is_read_only(deployment: Deployment, make_redis):
    empty_primary = make_redis()
    admin = deployment.token("readonly-admin", ("channel:*",), ("admin:sse", "publish:events"))
    with SSEClient(f"{deployment.base}/stream?channels={CHANNEL}", {"Authorization": f"Bearer {admin}"}, timeout=10) as stream:
        assert stream.status == 200
        stream_id = stream.next(5).json()["connection_id"]
        ticket = request("POST", deployment.base + "/tickets", b"", {"Authorization": f"Bearer {admin}"}).json()["ticket"]
        make_read_only(deployment.redis, empty_primary)
        try:
            answers = {name: send() for name, send in writes(deployment, stream_id, ticket).items()}
        finally:
            make_primary(deployment.redis)
    wrong = {name: (r.status, r.text[:200]) for name, r in answers.items() if r.status != 503}
    assert not wrong, wrong
    for name, resp in answers.items():
        assert resp.headers["Content-Type"] == "application/json", name
        assert resp.json()["error"] == "bus_unavailable", (name, resp.text)
        assert resp.headers["Retry-After"], name
    assert not [r for r in deployment.logs("error") if "Error" in str(r.get("error"))], "no 500 was logged"


def test_writes_work_again_once_redis_is_a_primary(deployment: Deployment, make_redis):
    make_read_only(deployment.redis, make_redis())
    make_primary(deployment.redis)
    user = deployment.token(f"after-{uuid.uuid4().hex[:6]}", ("channel:*",))
    resp = wait_until(
        lambda: (r := request("POST", deployment.base + "/tickets", b"", {"Authorization": f"Bearer {user}"})).status == 200 and r,
        10, 0.2, "tickets again",
    )
    assert resp.json()["ticket"]


@pytest.mark.parametrize(
    "message,unavailable",
    [
        ("READONLY You can't write against a read only replica.", True),
        ("NOREPLICAS Not enough good replicas to write.", True),
        ("LOADING Redis is loading the dataset in memory", True),
        ("OOM command not allowed when used memory > 'maxmemory'.", True),
        ("EXECABORT Transaction discarded because of previous errors.", False),
        ("WRONGTYPE Operation against a key holding the wrong kind of value", False),
        ("QUOTA 1 30", False),
    ],
)
def test_the_one_mapping_tells_unavailable_from_a_bug(message: str, unavailable: bool):
    import redis

    assert is_unavailable(redis.ResponseError(message)) is unavailable
