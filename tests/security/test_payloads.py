"""Publisher payloads end to end (gunicorn, Redis, a raw-socket stream): injections stay data, bad input publishes nothing."""

from __future__ import annotations

import json

from support.http_json import post_json, request

from chatgenius import close, config
from chatgenius.factory import create_app

from .conftest import Deployment

INJECTIONS = [
    "\n\nevent: evil\ndata: {}\n\n",
    "\r",
    "\r\nid: 999999\r\n\r\n",
    "\u2028\u2029",
    "\x00",
    "\x1b[2J\x7f\x85",
    "retry: 1\n\n: comment",
    "</script><script>alert(1)</script>",
]


def test_framing_injections_arrive_as_one_json_data_line_each(deployment: Deployment, user: str):
    room = f"channel:inject-{user[-6:]}"
    with deployment.stream(deployment.token(user), f"channels={room}") as client:
        assert client.status == 200 and client.next(5).event == "system.connected"
        before = client.raw_bytes_received
        ids = [deployment.publish(room, {"text": text, text: "as a key"}) for text in INJECTIONS]
        typing_status, _, _ = post_json(
            f"{deployment.base}/events", {"channel": room, "type": "user.typing", "data": {"who": "\n\nevent: evil"}},
            {"Authorization": f"Bearer {deployment.publisher()}"},
        )
        assert typing_status == 201
        frames = []
        while not frames or frames[-1].event != "user.typing":
            frame = client.read_until(lambda f: f.event != "user.presence", 5)  # presence is not ours to count
            frames.append(frame)
        assert not [f for f in iter(lambda: client.next(0.5), None) if f.event != "user.presence"]  # nothing was split in two
    assert [f.event for f in frames] == ["message.created"] * len(INJECTIONS) + ["user.typing"]
    assert [f.id for f in frames[:-1]] == ids and frames[-1].id is None
    for frame, text in zip(frames, INJECTIONS, strict=False):
        assert "\n" not in frame.data
        assert frame.json()["data"] == {"text": text, text: "as a key"}
    assert frames[-1].json()["data"] == {"who": "\n\nevent: evil"}
    assert before < client.raw_bytes_received


def test_a_batch_with_one_bad_event_publishes_nothing(deployment: Deployment, user: str):
    room = f"channel:batch-{user[-6:]}"
    auth = {"Authorization": f"Bearer {deployment.publisher()}"}
    with deployment.stream(deployment.token(user), f"channels={room}") as client:
        assert client.status == 200 and client.next(5).event == "system.connected"
        good = {"channel": room, "type": "message.created", "data": {"n": 1}}
        for bad in (
            {"channel": room + "\n", "type": "message.created", "data": {}},
            {"channel": room, "type": "system.reauth", "data": {}},
            {"channel": room, "type": "message.created", "data": {"t": "x" * 70000}},
        ):
            status, _, body = post_json(f"{deployment.base}/events", {"events": [good, bad, good]}, auth)
            assert status in (400, 413) and body["message"].startswith("events[1]"), body
        marker = deployment.publish(room, {"marker": True})
        first = client.read_until(lambda f: f.event == "message.created", 5)
        assert first.id == marker  # nothing from the refused batches came before it


def test_oversized_and_malformed_bodies_are_4xx(deployment: Deployment):
    auth = {"Authorization": f"Bearer {deployment.publisher()}", "Content-Type": "application/json"}
    url = f"{deployment.base}/events"
    big = {"channel": "channel:general", "type": "message.created", "data": {"t": "x" * 70000}}
    status, _, body = post_json(url, big, auth)
    assert status == 413 and body["error"] == "too_large"
    deep = b"[" * 100_000 + b"]" * 100_000
    resp = request("POST", url, deep, auth)
    assert resp.status == 400 and resp.json()["error"] == "bad_json"
    for raw in (b"{", b"\xff\xfe", b"NaN", b'{"channel":"channel:a","type":"message.created","data":{"x":NaN}}', b"1e999999"):
        resp = request("POST", url, raw, auth)
        assert resp.status == 400, (raw, resp.text)
    resp = request("POST", url, b"{}", {"Authorization": auth["Authorization"], "Content-Type": "text/plain"})
    assert resp.status in (400, 415) and resp.json()["error"] in ("bad_json", "unsupported_media_type")


def test_a_body_larger_than_any_valid_batch_is_413_before_parsing():
    app = create_app(config.load({"AUTH_MODE": "dev", "MAX_EVENT_BYTES": "64"}))
    try:
        client = app.test_client()
        minted = client.post("/dev/token", json={"sub": "p", "channels": ["channel:*"], "permissions": ["publish:events"]})
        token = minted.get_json()["token"]
        body = json.dumps({"events": [{"channel": "channel:a", "type": "message.created", "data": {"t": "x" * 40}}] * 5000})
        resp = client.post("/events", data=body, headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        assert resp.status_code == 413 and resp.get_json()["error"] == "too_large"
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
    finally:
        close(app)
