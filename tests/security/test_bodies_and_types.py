"""Bodies and types at the edges of POST /events and GET /stream (real gunicorn, Redis, a local JWKS).

- A chunked body has no Content-Length to refuse up front: it is read to one
  byte past the cap and refused whole (413), never cut at the cap and parsed.
- `user.presence` follows connections: it is the service's own, so publishers
  cannot forge it, like the `system.*` connection frames; `system.health` and
  `system.error` stay publishable.
- `HEAD /stream` answers the head and opens nothing: no presence, no lease.
"""

from __future__ import annotations

import json
import socket

import pytest
from support.http_json import get_json, post_json, request
from support.procs import wait_until

from .conftest import Deployment


def chunked_post(deployment: Deployment, path: str, pieces: list[bytes], token: str) -> tuple[int, dict]:
    """POST with Transfer-Encoding: chunked (no Content-Length), one chunk per piece; (status, JSON body)."""
    with socket.create_connection(("127.0.0.1", deployment.server.port), timeout=30) as sock:
        head = (
            f"POST {path} HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {token}\r\n"
            "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        sock.sendall(head.encode())
        try:
            for piece in pieces:
                sock.sendall(b"%X\r\n%b\r\n" % (len(piece), piece))
            sock.sendall(b"0\r\n\r\n")
        except OSError:
            pass  # the server may answer 413 and close before the client is done sending
        reader = sock.makefile("rb")
        status = int(reader.readline().split()[1])
        length = 0
        while (line := reader.readline()) not in (b"\r\n", b""):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        return status, json.loads(reader.read(length) or b"null")


def history_len(deployment: Deployment, channel: str) -> int:
    with deployment.redis.client() as client:
        return int(client.xlen(f"cg:h:{{{channel}}}"))


def test_chunked_body_over_the_cap_is_413_not_cut_and_published(deployment: Deployment, user: str):
    channel = f"channel:chunked-{user[-6:]}"
    event = json.dumps({"channel": channel, "type": "message.created", "data": {"text": "first"}}).encode()
    padding = [b" " * (1 << 20)] * 7  # 7 MiB of valid trailing whitespace: the JSON is complete before the cap
    status, body = chunked_post(deployment, "/events", [event, *padding], deployment.publisher())
    assert status == 413, body
    assert body["error"] == "too_large"
    assert history_len(deployment, channel) == 0


def test_chunked_body_under_the_cap_is_accepted(deployment: Deployment, user: str):
    channel = f"channel:chunked-ok-{user[-6:]}"
    event = json.dumps({"channel": channel, "type": "message.created", "data": {"text": "small"}}).encode()
    status, body = chunked_post(deployment, "/events", [event[:10], event[10:], b" " * 4096], deployment.publisher())
    assert status == 201, body
    assert history_len(deployment, channel) == 1


@pytest.mark.parametrize("batch", [False, True], ids=["single", "batch"])
def test_user_presence_cannot_be_published(deployment: Deployment, user: str, batch: bool):
    channel = f"channel:forge-{user[-6:]}"
    forged = {"channel": channel, "type": "user.presence", "data": {"user_id": "ceo", "status": "online"}}
    ok = {"channel": channel, "type": "message.created", "data": {}}
    payload = {"events": [ok, forged]} if batch else forged
    status, _, body = post_json(deployment.base + "/events", payload, {"Authorization": f"Bearer {deployment.publisher()}"})
    assert status == 400, body
    assert body["error"] == "bad_type" and "user.presence" in body["message"]
    assert history_len(deployment, channel) == 0


@pytest.mark.parametrize("etype", ["system.health", "system.error"])
def test_spec_system_events_stay_publishable(deployment: Deployment, user: str, etype: str):
    channel = f"channel:sys-{user[-6:]}"
    deployment.publish(channel, {"status": "degraded"}, etype)
    assert history_len(deployment, channel) == 1


def test_head_stream_opens_no_presence_and_takes_no_slot(deployment: Deployment, user: str):
    channel = f"channel:head-{user[-6:]}"
    token = deployment.token(user, (channel,))
    auth = {"Authorization": f"Bearer {token}"}
    for _ in range(3):  # more than MAX_CONNECTIONS_PER_USER=2: a HEAD must not hold a slot
        resp = request("HEAD", f"{deployment.base}/stream?channels={channel}", headers=auth)
        assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/event-stream") and resp.body == b""
    with deployment.redis.client() as client:
        assert client.zcard(f"cg:c:{{{user}}}") == 0
    status, _, body = get_json(f"{deployment.base}/presence/{channel}", auth)
    assert status == 200 and body["users"] == [], body
    assert history_len(deployment, channel) == 0  # no user.presence event announced
    # A real stream still announces presence, so the check above could see one.
    with deployment.stream(token, f"channels={channel}") as client:
        assert client.status == 200
        wait_until(lambda: history_len(deployment, channel) == 1, 5, message="user.presence online")
