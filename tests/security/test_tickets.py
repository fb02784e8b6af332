"""Stream tickets: single use, short-lived, bound to their user, redeemable on any worker; JWTs never in URLs."""

from __future__ import annotations

import hashlib

import pytest
from support.http_json import get_json, post_json
from support.procs import wait_until

from .conftest import Deployment


def ticket_for(deployment: Deployment, token: str) -> dict:
    status, headers, body = post_json(f"{deployment.base}/tickets", {}, {"Authorization": f"Bearer {token}"})
    assert status == 200, body
    assert headers["Cache-Control"] == "no-store"
    return body


def test_ticket_opens_one_stream_once(deployment: Deployment, user: str):
    token = deployment.token(user, (f"user:{user}",))
    issued = ticket_for(deployment, token)
    assert issued["expires_in"] == 2  # TICKET_TTL=2 in this deployment (default and maximum 30)
    assert len(issued["ticket"]) >= 32 and issued["ticket"] not in token

    with deployment.stream(None, f"channels=user:{user}&ticket={issued['ticket']}") as first:
        assert first.status == 200, first.json_body()
        connected = first.next(5)
        assert connected.event == "system.connected" and connected.json()["user_id"] == user
        with deployment.stream(None, f"channels=user:{user}&ticket={issued['ticket']}") as second:
            assert second.status == 401
            body = second.json_body()
            assert body["reason"] == "bad_ticket" and 'error="invalid_token"' in second.headers["WWW-Authenticate"]
    assert issued["ticket"] not in deployment.server.log_path.read_text()


def test_ticket_expires(deployment: Deployment, user: str):
    issued = ticket_for(deployment, deployment.token(user))
    key = "cg:t:" + hashlib.sha256(issued["ticket"].encode()).hexdigest()  # the store holds a hash, never the ticket
    with deployment.redis.client() as r:
        assert r.exists(key) and not r.exists("cg:t:" + issued["ticket"])
        wait_until(lambda: not r.exists(key), 5, 0.05, "ticket expired in Redis")
    with deployment.stream(None, f"channels=channel:general&ticket={issued['ticket']}") as late:
        assert late.status == 401 and late.json_body()["reason"] == "bad_ticket"


def test_ticket_is_bound_to_its_user(deployment: Deployment, user: str):
    bob = user + "-bob"
    issued = ticket_for(deployment, deployment.token(bob, ()))
    # Bob's ticket is Bob: it cannot open Alice's personal channel.
    with deployment.stream(None, f"channels=user:{user}&ticket={issued['ticket']}") as theirs:
        assert theirs.status == 403 and theirs.json_body()["error"] == "forbidden"
    issued = ticket_for(deployment, deployment.token(bob, ()))
    with deployment.stream(None, f"channels=user:{bob}&ticket={issued['ticket']}") as own:
        assert own.status == 200 and own.next(5).json()["user_id"] == bob


def test_tickets_are_redeemed_on_any_worker(deployment: Deployment, user: str):
    # Issue on one worker, redeem on whichever accepts the stream: both workers must take part.
    token = deployment.token(user)
    served: set[tuple[int, int]] = set()
    for _ in range(30):
        issued = ticket_for(deployment, token)
        with deployment.stream(None, f"channels=channel:general&ticket={issued['ticket']}") as client:
            assert client.status == 200, client.json_body()
            cid = client.next(5).json()["connection_id"]
        issue_pid = [r["pid"] for r in deployment.logs("ticket.issue") if r.get("user_id") == user][-1]
        open_pid = wait_until(lambda cid=cid: [r["pid"] for r in deployment.logs("connection.open") if r.get("connection_id") == cid], 5)[0]
        served.add((issue_pid, open_pid))
        if any(a != b for a, b in served):
            break
        # The next stream must not race this one's lease (MAX_CONNECTIONS_PER_USER=2 here): the
        # server notices the close at its next write, a heartbeat (1 s) at the latest.
        wait_until(lambda cid=cid: any(r.get("connection_id") == cid for r in deployment.logs("connection.close")), 5)
    assert any(a != b for a, b in served), f"every ticket was redeemed on the worker that issued it: {served}"


def test_a_ticket_is_accepted_on_stream_only_and_cannot_buy_another(deployment: Deployment, user: str):
    issued = ticket_for(deployment, deployment.token(user))
    status, _, body = get_json(f"{deployment.base}/client-config?ticket={issued['ticket']}")
    assert status == 200  # public endpoints ignore it
    status, _, body = post_json(f"{deployment.base}/tickets?ticket={issued['ticket']}", {})
    assert status == 401 and "tickets are accepted on GET /stream only" in body["message"]
    status, _, body = get_json(f"{deployment.base}/poll?channels=channel:general&ticket={issued['ticket']}")
    assert status in (401, 429)


@pytest.mark.parametrize("param", ["access_token", "token"])
def test_a_jwt_in_the_query_string_is_refused(deployment: Deployment, user: str, param: str):
    token = deployment.token(user)
    with deployment.stream(None, f"channels=channel:general&{param}={token}") as client:
        assert client.status == 400
        body = client.json_body()
        assert body["error"] == "token_in_query" and "Authorization" in body["message"]
    # Even with a valid header beside it: the URL already leaked, the client must be fixed.
    with deployment.stream(token, f"channels=channel:general&{param}={token}") as both:
        assert both.status == 400
    status, _, body = post_json(f"{deployment.base}/tickets?{param}={token}", {})
    assert status == 400 and body["error"] == "token_in_query"
    assert token not in deployment.server.log_path.read_text()
