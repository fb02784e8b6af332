"""Publishing from the app's own code (chatgenius.realtime(app)) and POST /events' Idempotency-Key,
on apps made by create_app over the in-process bus and over a real Redis."""

from __future__ import annotations

import json
from collections.abc import Iterator

import flask
import pytest
from flask import Flask
from support.procs import wait_until

import chatgenius
from chatgenius.factory import create_app
from chatgenius.publishing import PublishError

CHAN = "channel:a"


@pytest.fixture(params=["memory", "redis"])
def app(request) -> Iterator[Flask]:
    env = {"AUTH_MODE": "dev", "BIND": "127.0.0.1:8000", "HEARTBEAT_INTERVAL": "0.2", "RATE_LIMIT_PUBLISH": "3/minute"}
    if request.param == "redis":
        env["REDIS_URL"] = request.getfixturevalue("redis_url")
    app = create_app(env=env)
    wait_until(lambda: app.extensions["chatgenius"].bus.health() is None, 5, message="the bus is connected")

    @app.post("/app/messages")
    def post_message():
        """What a view of the monolith does: store a message (elided), then publish it."""
        body = flask.request.get_json()
        key = flask.request.headers.get("X-Key")
        return {"id": chatgenius.realtime(app).publish(CHAN, "message.created", body, idempotency_key=key)}, 201

    yield app
    chatgenius.close(app)


def token(client, sub: str, permissions: list[str] | None = None) -> dict[str, str]:
    body = {"sub": sub, "channels": ["channel:*"], "permissions": permissions or []}
    return {"Authorization": "Bearer " + client.post("/dev/token", json=body).json["token"]}


class Stream:
    """A test-client stream split into (event, id, data) frames, skipping presence."""

    def __init__(self, client, headers: dict[str, str], last_event_id: str | None = None) -> None:
        if last_event_id:
            headers = {**headers, "Last-Event-ID": last_event_id}
        self.response = client.get(f"/stream?channels={CHAN}", headers=headers, buffered=False)
        assert self.response.status_code == 200
        self._body = iter(self.response.response)
        self._pending: list[tuple[str, str | None, dict]] = []
        assert self.next()[0] == "system.connected"

    def next(self, limit: int = 100) -> tuple[str, str | None, dict]:
        for _ in range(limit):
            if self._pending:
                return self._pending.pop(0)
            for block in next(self._body).decode().split("\n\n"):
                fields = dict(line.split(": ", 1) for line in block.split("\n") if ": " in line and not line.startswith(":"))
                if "event" in fields and fields["event"] != "user.presence":
                    self._pending.append((fields["event"], fields.get("id"), json.loads(fields["data"])))
        raise AssertionError(f"no frame in {limit} writes")

    def until_data(self, n: int) -> list[tuple[str, str | None, dict]]:
        """Every message frame up to the one whose data is {"n": n}."""
        got = []
        while True:
            event, ident, data = self.next()
            if event == "message.created":
                got.append((event, ident, data))
                if data["data"] == {"n": n}:
                    return got

    def close(self) -> None:
        self.response.close()


def test_a_view_and_code_outside_a_request_publish_to_streams(app):
    client = app.test_client()
    alice = token(client, "alice")
    stream = Stream(client, alice)
    try:
        answer = client.post("/app/messages", json={"n": 1})
        assert answer.status_code == 201
        outside = chatgenius.realtime(app).publish(CHAN, "message.created", {"n": 2})
        many = chatgenius.realtime(app).publish_many(
            [{"channel": CHAN, "type": "user.typing", "data": {"n": 3}}, {"channel": CHAN, "type": "message.created", "data": {"n": 4}}]
        )
        assert many[0] is None and many[1] is not None
        got = stream.until_data(4)
        assert [(i, d["data"]["n"]) for _, i, d in got] == [(answer.json["id"], 1), (outside, 2), (many[1], 4)]
    finally:
        stream.close()
    resumed = Stream(client, alice, last_event_id=answer.json["id"])
    try:
        assert [i for _, i, _ in resumed.until_data(4)] == [outside, many[1]]
    finally:
        resumed.close()


def test_bad_input_raises_a_publish_error_and_publishes_nothing(app):
    rt = chatgenius.realtime(app)
    head = app.extensions["chatgenius"].bus.head()
    cases = [
        (lambda: rt.publish("nope", "message.created", {}), "bad_channel", 400),
        (lambda: rt.publish(CHAN, "system.connected", {}), "bad_type", 400),
        (lambda: rt.publish(CHAN, "message.created", {"t": "x" * 70_000}), "too_large", 413),
        (lambda: rt.publish(CHAN, "message.created", {}, idempotency_key="has space"), "bad_idempotency_key", 400),
        (lambda: rt.publish_many([{"channel": CHAN, "type": "message.created"}, {"channel": CHAN}]), "bad_type", 400),
        # Values of the wrong type are bad input too, not a TypeError (the API stays interpreted:
        # compiled, its annotations would be checked on entry; chatgenius/compiled.py)
        (lambda: rt.publish(None, "message.created", {}), "bad_channel", 400),  # type: ignore[arg-type]
        (lambda: rt.publish(CHAN.encode(), "message.created", {}), "bad_channel", 400),  # type: ignore[arg-type]
        (lambda: rt.publish(CHAN, None, {}), "bad_type", 400),  # type: ignore[arg-type]
        (lambda: rt.publish(CHAN, "message.created", {}, idempotency_key=123), "bad_idempotency_key", 400),  # type: ignore[arg-type]
        (lambda: rt.publish_many([{"channel": CHAN, "type": "message.created"}], idempotency_key=b"k"), "bad_idempotency_key", 400),  # type: ignore[arg-type]
    ]
    for call, code, status in cases:
        with pytest.raises(PublishError) as info:
            call()
        assert (info.value.code, info.value.status) == (code, status)
    assert app.extensions["chatgenius"].bus.head() == head
    answer = app.test_client().post("/app/messages", json=[1])  # uncaught in a view: the JSON error
    assert answer.status_code == 400 and answer.json["error"] == "bad_data"


def test_an_app_key_publishes_once_and_a_user_is_rate_limited_like_over_http(app):
    client = app.test_client()
    rt = chatgenius.realtime(app)
    first = rt.publish(CHAN, "message.created", {"n": 1}, idempotency_key="msg-1")
    assert rt.publish(CHAN, "message.created", {"n": 1}, idempotency_key="msg-1") == first
    assert client.post("/app/messages", json={"n": 1}, headers={"X-Key": "msg-1"}).json["id"] == first
    with pytest.raises(PublishError) as conflict:
        rt.publish(CHAN, "message.created", {"n": 2}, idempotency_key="msg-1")
    assert (conflict.value.code, conflict.value.status) == ("idempotency_conflict", 422)
    # The app's own publishes have no quota (RATE_LIMIT_PUBLISH is 3/minute here) ...
    assert all(rt.publish(CHAN, "message.created", {"n": n}) for n in range(5))
    # ... one on a user's behalf shares that user's POST /events counter, and that user's key scope.
    bob = token(client, "bob", ["publish:events"])
    posted = client.post("/events", json={"channel": CHAN, "type": "message.created", "data": {"n": 9}},
                         headers={**bob, "Idempotency-Key": "k"})
    assert posted.status_code == 201
    assert rt.publish(CHAN, "message.created", {"n": 9}, idempotency_key="k", user="bob") == posted.json["ids"][0]
    rt.publish(CHAN, "message.created", {"n": 10}, user="bob")
    rt.publish(CHAN, "message.created", {"n": 11}, user="bob")
    with pytest.raises(PublishError) as limited:
        rt.publish(CHAN, "message.created", {"n": 12}, user="bob")
    assert limited.value.status == 429 and "3 per 1 minute" in limited.value.message
    assert client.post("/events", json={"channel": CHAN, "type": "message.created", "data": {}}, headers=bob).status_code == 429


def test_post_events_replays_a_repeated_key_and_refuses_a_conflicting_one(app):
    client = app.test_client()
    alice, bob = token(client, "alice", ["publish:events"]), token(client, "bob", ["publish:events"])
    event = {"channel": CHAN, "type": "message.created", "data": {"n": 1}}
    first = client.post("/events", json=event, headers={**alice, "Idempotency-Key": "order-7"})
    again = client.post("/events", json=event, headers={**alice, "Idempotency-Key": "order-7"})
    other_user = client.post("/events", json=event, headers={**bob, "Idempotency-Key": "order-7"})
    assert first.status_code == again.status_code == other_user.status_code == 201
    assert "Idempotent-Replayed" not in first.headers and again.headers["Idempotent-Replayed"] == "true"
    assert again.json == first.json and other_user.json != first.json
    conflict = client.post("/events", json={**event, "data": {"n": 2}}, headers={**alice, "Idempotency-Key": "order-7"})
    assert conflict.status_code == 422 and conflict.json["error"] == "idempotency_conflict"
    for bad in ("", "a b", "x" * 256):
        answer = client.post("/events", json=event, headers={**alice, "Idempotency-Key": bad})
        assert answer.status_code == 400 and answer.json["error"] == "bad_idempotency_key"
    batch = {"events": [{**event, "idempotency_key": "e1"}, {**event, "data": {"n": 3}}]}
    one = client.post("/events", json=batch, headers=alice).json["ids"]
    two = client.post("/events", json=batch, headers=alice)
    assert two.status_code == 201 and "Idempotent-Replayed" not in two.headers
    assert two.json["ids"][0] == one[0] and two.json["ids"][1] != one[1]
