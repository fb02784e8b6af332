"""Auth0 validation, hardened: every bad token is a 401 with its reason, keys rotate, the JWKS may fail.

Real gunicorn (2 gevent workers) + Redis + a local JWKS server (support.jwks_server).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import ExitStack

import pytest
from support.gunicorn import Gunicorn
from support.http_json import get_json, post_json, request
from support.jwks_server import Issuer, JWKSServer, new_key
from support.procs import wait_until
from support.redis_server import RedisServer

from .conftest import Deployment, security_env

# name -> (builds the Authorization header value from the issuer and a subject, expected reason)
BAD_TOKENS: dict[str, tuple[Callable[[Issuer, str], str | None], str]] = {
    "missing": (lambda i, sub: None, "missing"),
    "not_a_jwt": (lambda i, sub: "Bearer not-a-jwt", "malformed"),
    "not_bearer": (lambda i, sub: "Basic " + i.token(sub), "malformed"),
    "garbage_segments": (lambda i, sub: "Bearer e30.e30.AAAA", "bad_algorithm"),
    "expired": (lambda i, sub: "Bearer " + i.token(sub, ttl=-120), "expired"),
    "not_yet_valid": (lambda i, sub: "Bearer " + i.sign(i.claims(sub, nbf=int(time.time()) + 300)), "not_yet_valid"),
    "wrong_issuer": (lambda i, sub: "Bearer " + i.sign(i.claims(sub, iss="https://evil.example/")), "bad_issuer"),
    "wrong_audience": (lambda i, sub: "Bearer " + i.sign(i.claims(sub, aud=["https://other-api.example"])), "bad_audience"),
    "alg_none": (lambda i, sub: "Bearer " + i.unsigned(i.claims(sub)), "bad_algorithm"),
    "hs256_with_rsa_public_key": (lambda i, sub: "Bearer " + i.hs256_with_public_key(i.claims(sub)), "bad_algorithm"),
    "unknown_kid": (lambda i, sub: "Bearer " + i.sign(i.claims(sub), key=new_key()), "unknown_kid"),
    "foreign_key_with_known_kid": (lambda i, sub: "Bearer " + i.sign(i.claims(sub), key=new_key(), kid=i.key.kid), "bad_signature"),
    "tampered_payload": (
        lambda i, sub: "Bearer " + i.tampered(i.token(sub), permissions=["publish:events", "admin:sse"]),
        "bad_signature",
    ),
}

ENDPOINTS = [("GET", "/stream?channels=channel:general"), ("POST", "/events"), ("POST", "/tickets")]


def auth_fails(deployment: Deployment, reason: str) -> int:
    return sum(1 for r in deployment.logs("auth.fail") if r.get("reason") == reason)


@pytest.mark.parametrize("method,path", ENDPOINTS, ids=["stream", "events", "tickets"])
@pytest.mark.parametrize("case", list(BAD_TOKENS))
def test_bad_token_is_401_with_reason_and_logged_without_the_token(deployment: Deployment, user: str, case: str, method: str, path: str):
    build, reason = BAD_TOKENS[case]
    authorization = build(deployment.issuer, user)
    before = auth_fails(deployment, reason)
    headers = {"Accept": "text/event-stream"} if path.startswith("/stream") else {"Content-Type": "application/json"}
    if authorization is not None:
        headers["Authorization"] = authorization
    body = b'{"channel":"channel:general","type":"message.created","data":{}}' if method == "POST" else None
    resp = request(method, deployment.base + path, body, headers)

    assert resp.status == 401, resp.text
    assert resp.headers["Content-Type"].startswith("application/json")  # no stream was opened
    assert resp.json()["error"] == "unauthorized" and resp.json()["reason"] == reason
    challenge = resp.headers["WWW-Authenticate"]
    assert challenge.startswith("Bearer ")
    if reason == "missing":
        assert "error=" not in challenge  # RFC 6750, 3.1: no error code without a credential
    else:
        assert 'error="invalid_token"' in challenge and f'error_description="{reason}"' in challenge
    wait_until(lambda: auth_fails(deployment, reason) > before, 5, message=f"auth.fail {reason} logged")
    assert not [r for r in deployment.logs("connection.open") if r.get("user_id") == user]
    if authorization is not None:
        secret = authorization.split(" ", 1)[1]
        assert secret not in deployment.server.log_path.read_text()


def test_good_token_opens_a_stream_and_logs_auth_ok(deployment: Deployment, user: str):
    with deployment.stream(deployment.token(user, (f"user:{user}",)), f"channels=user:{user}") as client:
        assert client.status == 200
        connected = client.next(5)
        assert connected.event == "system.connected" and connected.json()["user_id"] == user
    assert any(r.get("user_id") == user for r in deployment.logs("auth.ok"))


def test_failed_credentials_are_rate_limited_by_address(deployment: Deployment):
    # /poll allows 5 a minute: a flood of bad tokens from one address is cut off with 429, keyed by IP.
    statuses = [get_json(f"{deployment.base}/poll?channels=channel:general", {"Authorization": "Bearer x.y.z"})[0] for _ in range(7)]
    assert statuses[:5] == [401] * 5 and statuses[5:] == [429, 429]


def test_token_signed_by_a_key_added_after_start_is_accepted(deployment: Deployment, user: str):
    rotated = new_key()
    token = deployment.issuer.sign(deployment.issuer.claims(user), key=rotated)
    headers = {"Authorization": f"Bearer {token}"}
    status, _, body = post_json(f"{deployment.base}/tickets", {}, headers)
    assert status == 401 and body["reason"] == "unknown_kid"
    deployment.jwks.add_key(rotated)
    try:
        # Each worker refetches on the unknown kid at most every JWKS_MIN_REFRESH (0.3 s here).
        def all_accept() -> bool:
            return all(post_json(f"{deployment.base}/tickets", {}, headers)[0] == 200 for _ in range(8))

        wait_until(all_accept, 10, 0.1, "both workers accept the rotated key")
    finally:
        deployment.jwks.keys.remove(rotated)


def test_jwks_outage_keeps_open_streams_and_known_keys(deployment: Deployment, user: str):
    room = f"channel:jwks-{user[-6:]}"
    with deployment.stream(deployment.token(user), f"channels={room}") as before:
        assert before.status == 200 and before.next(5).event == "system.connected"
        deployment.jwks.stop()
        try:
            started = time.monotonic()
            status, _, body = post_json(f"{deployment.base}/tickets", {}, {"Authorization": "Bearer " + deployment.issuer.sign(
                deployment.issuer.claims(user), key=new_key())})
            assert status == 401 and body["reason"] == "unknown_kid"
            assert time.monotonic() - started < 3.5  # the 3 s fetch timeout bounds it; refused is instant

            with deployment.stream(deployment.token(user), f"channels={room}") as fresh:
                assert fresh.status == 200, fresh.json_body()  # a new token with a known kid still verifies
                assert fresh.next(5).event == "system.connected"
                cursor = deployment.publish(room, {"text": "during the outage"})
                for client in (before, fresh):
                    frame = client.read_until(lambda f: f.event == "message.created", 5)
                    assert frame.id == cursor
            count = len(before.comments)
            before.wait_comments(count + 2, timeout=5)  # the old stream keeps its heartbeat
            assert not before.closed
        finally:
            deployment.jwks.start()


def test_startup_with_the_jwks_down_is_not_fatal(redis_binary: str, tmp_path):
    with ExitStack() as stack:
        redis = stack.enter_context(RedisServer(binary=redis_binary, workdir=tmp_path / "redis"))
        jwks = JWKSServer()  # not started: the identity provider is down while the service boots
        stack.callback(jwks.stop)
        issuer = Issuer(jwks)
        # Default JWKS_MIN_REFRESH (30 s): with no key at all the service still retries within a second.
        env = security_env(redis.url, jwks, JWKS_MIN_REFRESH="30")
        server = stack.enter_context(Gunicorn(workers=2, env=env, workdir=tmp_path / "gunicorn"))
        headers = {"Authorization": f"Bearer {issuer.token('auth0|late')}"}
        assert get_json(server.base_url + "/healthz")[0] == 200
        status, _, body = post_json(server.base_url + "/tickets", {}, headers)
        assert status == 401 and body["reason"] == "unknown_kid"
        jwks.start()

        def all_accept() -> bool:
            return all(post_json(server.base_url + "/tickets", {}, headers)[0] == 200 for _ in range(6))

        wait_until(all_accept, 8, 0.2, "tokens verify once the JWKS is back")
        assert any(r.get("event") == "jwks.fail" for r in server.json_logs())
