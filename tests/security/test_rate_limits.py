"""Per-user rate limits: shared by every worker through Redis, 429 with Retry-After, failing open without Redis."""

from __future__ import annotations

import json

import pytest
from support.http_json import get_json, post_json
from support.jwks_server import Issuer, JWKSServer
from support.procs import wait_until

from chatgenius import close, config
from chatgenius.factory import create_app

from .conftest import Deployment, security_env

POLL = "/poll?channels=channel:general&timeout=0"


def test_poll_limit_counts_per_user_across_both_workers(deployment: Deployment, user: str):
    for attempt in range(6):
        sub = f"{user}-{attempt}"
        auth = {"Authorization": f"Bearer {deployment.token(sub)}"}
        answers = [get_json(deployment.base + POLL, auth) for _ in range(8)]  # a new connection each
        statuses = [status for status, _, _ in answers]
        assert statuses == [200] * 5 + [429] * 3, statuses  # RATE_LIMIT_POLL=5/minute
        pids = {r["pid"] for r in deployment.logs("auth.ok") if r.get("user_id") == sub}
        if len(pids) >= 2:
            break  # both workers answered this user, and together they allowed exactly 5
    assert len(pids) >= 2, "every attempt landed on one worker"

    status, headers, body = answers[-1]
    assert body["error"] == "rate_limited" and "5 per 1 minute" in body["message"]
    assert 1 <= int(headers["Retry-After"]) <= 60 and body["retry_after"] == int(headers["Retry-After"])
    assert headers["Content-Type"].startswith("application/json")
    with deployment.redis.client() as r:
        assert r.keys("cg:rl*"), "the counters live in the shared Redis"

    # Another user has their own budget, and the same user still has their other endpoints.
    assert get_json(deployment.base + POLL, {"Authorization": f"Bearer {deployment.token(user + '-other')}"})[0] == 200
    assert post_json(f"{deployment.base}/tickets", {}, {"Authorization": f"Bearer {deployment.token(sub)}"})[0] == 200


def test_publish_limit_is_counted_in_the_publish_itself_across_workers(redis_binary: str, tmp_path, user: str):
    # RATE_LIMIT_PUBLISH for an authenticated POST /events is counted by the bus, inside the
    # publish script (one round trip): same answer as flask-limiter's, nothing published past it.
    from contextlib import ExitStack

    from .conftest import start_deployment

    event = {"type": "message.created", "channel": "channel:general", "data": {"text": "hi"}}
    with ExitStack() as stack:
        d = start_deployment(stack, redis_binary, tmp_path, RATE_LIMIT_PUBLISH="4/minute")
        auth = {"Authorization": f"Bearer {d.token(user, permissions=('publish:events',))}"}
        answers = [post_json(d.base + "/events", event, auth) for _ in range(6)]  # a new connection each
        assert [status for status, _, _ in answers] == [201] * 4 + [429] * 2
        status, headers, body = answers[-1]
        assert body["error"] == "rate_limited" and "4 per 1 minute" in body["message"]
        assert 1 <= int(headers["Retry-After"]) <= 60 and body["retry_after"] == int(headers["Retry-After"])
        published = [b["ids"][0] for s, _, b in answers if s == 201]
        with d.redis.client() as r:
            stored = [entry_id.decode().split("-")[0] for entry_id, _ in r.xrange("cg:h:{channel:general}")]
            assert stored == [c.rsplit("-", 1)[1] for c in published]  # the refused ones stored nothing
            assert r.keys("cg:q:events:user:*"), "the counter lives in the shared Redis"
        other = {"Authorization": f"Bearer {d.token(user + '-b', permissions=('publish:events',))}"}
        assert post_json(d.base + "/events", event, other)[0] == 201  # another user's own budget
        # A bad credential on /events is still limited by address (flask-limiter), before any publish.
        bad = [post_json(d.base + "/events", event, {"Authorization": "Bearer x.y.z"})[0] for _ in range(6)]
        assert bad == [401] * 4 + [429] * 2, bad


def test_rate_limit_storage_down_fails_open_with_one_log_line(make_redis, capsys: pytest.CaptureFixture[str]):
    redis_server = make_redis()
    with JWKSServer() as jwks:
        issuer = Issuer(jwks)
        settings = config.load(security_env(redis_server.url, jwks, RATE_LIMIT_POLL="1000/minute", LOG_LEVEL="INFO"))
        app = create_app(settings)
        rt = app.extensions["chatgenius"]
        try:
            wait_until(lambda: rt.bus.health() is None, 5, message="bus reader connected")
            client = app.test_client()
            auth = {"Authorization": f"Bearer {issuer.token('auth0|failopen', ('channel:*',))}"}
            assert client.get(POLL, headers=auth).status_code == 200
            redis_server.kill()
            answers = [client.get(POLL, headers=auth) for _ in range(3)]
            # Not 429 (the limiter cannot count, so it lets the request through) and not 500: the bus says 503.
            assert [a.status_code for a in answers] == [503] * 3
            assert {a.get_json()["error"] for a in answers} == {"bus_unavailable"}
        finally:
            close(app)
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    unavailable = [r for r in lines if r.get("event") == "ratelimit.unavailable"]
    assert len(unavailable) == 1 and "Traceback" not in unavailable[0].get("error", "")
