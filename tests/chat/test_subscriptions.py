"""POST /subscriptions end to end: the request lands on host A, the stream lives on host B."""

from __future__ import annotations

import time

from support.http_json import post_json
from support.service import bearer, publish

from .helpers import PUBLISHER, open_stream, token


def change(base: str, tok: str, body: dict) -> tuple[int, dict]:
    status, _, answer = post_json(f"{base}/subscriptions", body, bearer(tok))
    return status, answer


def messages(stream, n: int) -> list:
    got = []
    while len(got) < n:
        frame = stream.client.next(5)
        assert frame is not None, f"only {len(got)}/{n} messages"
        if frame.event == "message.created":
            got.append(frame)
    return got


def test_subscription_added_on_host_a_delivers_on_the_stream_on_host_b(hosts):
    a, b = hosts
    pub = token(a.base_url, "sub-pub", permissions=PUBLISHER)
    alice = token(a.base_url, "sub-alice", ["channel:*", "dm:*"])
    stream = open_stream(b.base_url, alice, "channel:sub-one")
    try:
        before = publish(a.base_url, pub, "dm:sub-1-2", {"n": 0})  # not subscribed yet: never delivered
        status, body = change(a.base_url, alice, {"connection_id": stream.id, "subscribe": ["dm:sub-1-2"], "unsubscribe": []})
        assert status == 200, body
        assert body == {"connection_id": stream.id, "channels": ["channel:sub-one", "dm:sub-1-2"]}
        ids = [publish(a.base_url, pub, "dm:sub-1-2", {"n": 1}), publish(b.base_url, pub, "channel:sub-one", {"n": 2})]
        got = messages(stream, 2)
        assert [f.id for f in got] == ids and before not in [f.id for f in got]
        assert got[0].json()["channel"] == "dm:sub-1-2"

        # Unsubscribe the first channel: only the new one flows, on the same connection.
        status, body = change(b.base_url, alice, {"connection_id": stream.id, "unsubscribe": ["channel:sub-one"]})
        assert status == 200 and body["channels"] == ["dm:sub-1-2"]
        publish(a.base_url, pub, "channel:sub-one", {"n": 3})
        last = publish(a.base_url, pub, "dm:sub-1-2", {"n": 4})
        assert [f.id for f in messages(stream, 1)] == [last]

        # The cursor stays valid for every channel the stream now holds.
        stream.close()
        resumed = open_stream(a.base_url, alice, "dm:sub-1-2", **{"Last-Event-ID": ids[0]})
        try:
            assert [f.id for f in messages(resumed, 1)] == [last]
        finally:
            resumed.close()
    finally:
        stream.close()


def test_subscriptions_are_authorized_and_scoped_to_the_callers_streams(hosts):
    a, b = hosts
    alice = token(a.base_url, "sub-bob", ["channel:*"])
    mallory = token(a.base_url, "sub-mallory", ["channel:*", "dm:*"])
    stream = open_stream(b.base_url, alice, "channel:sub-two")
    try:
        status, body = change(a.base_url, alice, {"connection_id": stream.id, "subscribe": ["dm:sub-9-9"]})
        assert status == 403 and body["channels"] == ["dm:sub-9-9"]
        # Another user's stream is not found (ids reveal nothing), answered quickly by every process.
        started = time.monotonic()
        status, body = change(a.base_url, mallory, {"connection_id": stream.id, "subscribe": ["channel:sub-x"]})
        assert status == 404 and body["error"] == "no_connection"
        assert time.monotonic() - started < 1.5
        status, body = change(a.base_url, alice, {"connection_id": "0" * 32, "subscribe": ["channel:sub-x"]})
        assert status == 404
        status, body = change(a.base_url, alice, {"connection_id": stream.id, "unsubscribe": ["channel:sub-two"]})
        assert status == 400 and body["error"] == "no_channels"
        for bad in ({"subscribe": ["channel:x"]}, {"connection_id": stream.id}, {"connection_id": stream.id, "subscribe": "channel:x"},
                    {"connection_id": stream.id, "subscribe": ["Bad Name"]}, {"connection_id": stream.id, "other": 1}):
            assert change(a.base_url, alice, bad)[0] == 400, bad
        stream.client.next(0.2)
        assert not stream.client.closed  # refused changes leave the stream as it was
    finally:
        stream.close()
