"""The usual POST /events is answered before Flask (web/publish_fast.py) with Flask's own answer.

Each test wraps the Flask app behind the fast path with a counter, so it can
tell which path answered; answers are compared with what the blueprint gives.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask

import chatgenius
from chatgenius.factory import create_app
from chatgenius.web.publish_fast import FastPublish

EVENT = {"channel": "channel:a", "type": "message.created", "data": {"text": "hi"}}
VARYING = {"Date", "X-Request-ID", "Content-Length"}


class Counted:
    """The app behind the fast path, counting the requests it gets."""

    def __init__(self, app: Callable[..., Any]) -> None:
        self.app = app
        self.calls = 0

    def __call__(self, environ: dict, start_response: Callable[..., Any]) -> Any:
        self.calls += 1
        return self.app(environ, start_response)


Make = Callable[..., tuple[Flask, Counted, str]]


@pytest.fixture
def make() -> Iterator[Make]:
    """Apps with their counted Flask app and a publisher's token; closed after the test."""
    made: list[Flask] = []

    def build(**env: str) -> tuple[Flask, Counted, str]:
        app = create_app(env={"AUTH_MODE": "dev", **env})
        made.append(app)
        fast = app.wsgi_app
        assert isinstance(fast, FastPublish)
        behind = fast.app = Counted(fast.app)
        client = app.test_client()
        claims = {"sub": "pub", "channels": ["channel:*"], "permissions": ["publish:events"]}
        token = client.post("/dev/token", json=claims).get_json()["token"]
        return app, behind, token

    yield build
    for app in made:
        chatgenius.close(app)


def post(app: Flask, token: str, body: object, **headers: str):
    raw = body if isinstance(body, (bytes, str)) else json.dumps(body)
    headers.setdefault("Content-Type", "application/json")
    return app.test_client().post("/events", data=raw, headers={"Authorization": f"Bearer {token}", **headers})


def shape(resp) -> tuple[int, dict, object]:
    return resp.status_code, {k: v for k, v in resp.headers.items() if k not in VARYING}, resp.get_json()


def test_a_token_seen_once_publishes_without_flask_and_gets_the_same_answer(make: Make):
    app, behind, token = make()
    first = post(app, token, EVENT)  # the token is verified (and cached) by the full path
    assert behind.calls == 2  # /dev/token and this publish
    second = post(app, token, EVENT)
    assert behind.calls == 2, "the usual publish went through Flask"
    assert first.status_code == second.status_code == 201
    a, b = shape(first), shape(second)
    assert a[1] == b[1]
    ids = [first.get_json()["ids"][0], second.get_json()["ids"][0]]
    epoch = ids[0].rsplit("-", 1)[0]
    assert ids == [f"{epoch}-1", f"{epoch}-2"]
    replay = app.extensions["chatgenius"].bus.replay(["channel:a"], None, 10)
    assert replay.head is not None and str(replay.head) == ids[1]
    assert second.headers["X-Request-ID"] and second.headers["X-Request-ID"] != first.headers["X-Request-ID"]
    assert post(app, token, EVENT, **{"X-Request-ID": "trace-42"}).headers["X-Request-ID"] == "trace-42"


def test_a_batch_takes_the_fast_path_too(make: Make):
    app, behind, token = make()
    post(app, token, EVENT)
    calls = behind.calls
    resp = post(app, token, {"events": [EVENT, {**EVENT, "type": "user.typing"}]})
    assert behind.calls == calls
    assert resp.status_code == 201 and len(resp.get_json()["ids"]) == 2 and resp.get_json()["ids"][1] is None


@pytest.mark.parametrize(
    "headers, body",
    [
        ({"Origin": "https://chat.example"}, EVENT),  # CORS answers belong to flask-cors
        ({"Content-Type": "text/plain"}, EVENT),
    ],
    ids=["origin", "not-json-type"],
)
def test_unusual_requests_go_to_flask_with_their_body(make: Make, headers, body):
    app, behind, token = make()
    post(app, token, EVENT)
    calls = behind.calls
    resp = post(app, token, body, **headers)
    assert behind.calls == calls + 1
    if "Origin" in headers:
        assert resp.status_code == 201  # the body reached Flask whole
    else:
        assert resp.status_code == 400 and resp.get_json()["error"] == "bad_json"


@pytest.mark.parametrize("body", [b"{not json", b"[" * 50000, b"null"], ids=["bad-json", "deep-json", "null"])
def test_a_body_that_is_not_json_gets_flasks_answer_from_the_fast_path(make: Make, body):
    app, behind, token = make()
    post(app, token, EVENT)
    calls = behind.calls
    fast = post(app, token, body)
    assert behind.calls == calls
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    full = app.test_client().post("/events?via=flask", data=body, headers=headers)
    assert behind.calls == calls + 1
    assert shape(fast) == shape(full)
    assert fast.status_code == 400 and fast.get_json()["error"] == "bad_json"


def test_a_query_string_or_an_unverified_token_goes_to_flask(make: Make):
    app, behind, token = make()
    calls = behind.calls
    assert post(app, token, EVENT).status_code == 201  # not verified in this process yet
    assert behind.calls == calls + 1
    resp = app.test_client().post("/events?token=x", json=EVENT, headers={"Authorization": f"Bearer {token}"})
    assert resp.status_code == 400 and resp.get_json()["error"] == "token_in_query"
    assert behind.calls == calls + 2
    resp = post(app, token + "x", EVENT)
    assert resp.status_code == 401 and behind.calls == calls + 3


def test_gzip_clients_go_to_flask_while_compression_is_on(make: Make):
    app, behind, token = make(ENABLE_COMPRESSION="true")
    post(app, token, EVENT)
    calls = behind.calls
    fast = post(app, token, EVENT)
    assert behind.calls == calls and fast.headers["Vary"] == "Accept-Encoding"
    post(app, token, EVENT, **{"Accept-Encoding": "gzip"})
    assert behind.calls == calls + 1


def test_refusals_after_parsing_are_the_blueprints_answers(make: Make):
    app, behind, token = make(RATE_LIMIT_PUBLISH="3/minute")
    reader = app.test_client().post("/dev/token", json={"sub": "reader", "channels": ["channel:*"]}).get_json()["token"]
    bad = {**EVENT, "type": "no.such"}
    full = [shape(post(app, t, b)) for t, b in ((token, bad), (reader, EVENT))]  # tokens unverified: Flask answers
    calls = behind.calls
    fast = [shape(post(app, t, b)) for t, b in ((token, bad), (reader, EVENT))]
    assert behind.calls == calls, "refusals after parsing went through Flask"
    assert fast == full
    assert [s[0] for s in fast] == [400, 403]
    post(app, token, EVENT)  # the quota counts publishes, refused ones not
    statuses = [post(app, token, EVENT) for _ in range(3)]
    assert [r.status_code for r in statuses] == [201, 201, 429]
    assert statuses[-1].get_json()["error"] == "rate_limited" and int(statuses[-1].headers["Retry-After"]) >= 1
    assert behind.calls == calls


def test_an_idempotency_key_on_the_fast_path_answers_the_first_ids_once_more(make: Make):
    app, behind, token = make()
    post(app, token, EVENT)
    calls = behind.calls
    first = post(app, token, EVENT, **{"Idempotency-Key": "order-7"})
    again = post(app, token, EVENT, **{"Idempotency-Key": "order-7"})
    assert behind.calls == calls
    assert first.status_code == again.status_code == 201
    assert again.get_json() == first.get_json() and "Idempotent-Replayed" not in first.headers
    assert again.headers["Idempotent-Replayed"] == "true"
    conflict = post(app, token, {**EVENT, "data": {"text": "other"}}, **{"Idempotency-Key": "order-7"})
    assert conflict.status_code == 422 and conflict.get_json()["error"] == "idempotency_conflict"
    bad = post(app, token, EVENT, **{"Idempotency-Key": "has space"})
    assert bad.status_code == 400 and bad.get_json()["error"] == "bad_idempotency_key"
    assert behind.calls == calls


def test_the_lean_path_checks_a_bad_token_once_and_leaves_its_repeats_to_flask(make: Make, monkeypatch):
    """caller(verify=True) (the gunicorn worker's lean path) verifies an uncached token itself; a bad
    one goes to Flask, and its repeats go there without a second check here (Flask checks each)."""
    app, _behind, token = make()
    fast = app.wsgi_app
    verifier = app.extensions["chatgenius"].verifier
    checked: list[str] = []
    real = verifier.verify

    def counted(tok: str):
        checked.append(tok)
        return real(tok)

    monkeypatch.setattr(verifier, "verify", counted)
    body = json.dumps(EVENT)
    head = {"content-type": "application/json", "content-length": str(len(body))}
    bad = {**head, "authorization": f"Bearer {token}x"}
    assert fast.caller(bad, verify=True) is None and fast.caller(bad, verify=True) is None
    assert len(checked) == 1
    assert fast.caller(bad) is None and len(checked) == 1  # without verify: the cache only
    other = app.test_client().post("/dev/token", json={"sub": "pub2", "channels": ["channel:*"], "permissions": ["publish:events"]})
    good = {**head, "authorization": f"Bearer {other.get_json()['token']}"}
    who = fast.caller(good, verify=True)
    assert who is not None and who.sub == "pub2" and len(checked) == 2
    assert fast.caller(good, verify=True) is who and len(checked) == 2  # cached by the verifier now
    assert fast.caller({**good, "content-length": "0"}, verify=True) is None
    assert fast.caller({**bad, "content-length": "x"}, verify=True) is None and len(checked) == 2  # no check for a bad head
