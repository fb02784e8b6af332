"""Exactly-once publishing end to end: real gunicorn (2 gevent workers), real Redis, raw sockets.

A publisher that lost an answer retries with the same Idempotency-Key; duplicates may
also race on two workers. Either way readers must see each event once, live and in replay.
"""

from __future__ import annotations

import json
import socket

import gevent
from support.gunicorn import Gunicorn
from support.http_json import post_json
from support.service import bearer, connected_stream, publish
from support.sse_client import Frame, SSEClient

CHAN = "channel:general"


def open_stream(server: Gunicorn, token: str, last_event_id: str | None = None) -> SSEClient:
    return connected_stream(server.base_url, token, CHAN, last_event_id)


def messages(client: SSEClient, until: int) -> list[Frame]:
    """Message frames up to and including the one with data {"n": until} (presence skipped)."""
    got = []
    while not got or got[-1].json()["data"]["n"] != until:
        got.append(client.read_until(lambda f: f.event == "message.created", 10))
    return got


def batch(*numbers: int) -> dict:
    return {"events": [{"channel": CHAN, "type": "message.created", "data": {"n": n}} for n in numbers]}


def test_a_retry_after_a_lost_answer_gets_the_original_ids_and_readers_see_the_events_once(server, alice):
    stream = open_stream(server, alice)
    before = publish(server.base_url, alice, CHAN, {"n": 0})
    body = json.dumps(batch(1, 2)).encode()
    head = (
        f"POST /events HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nAuthorization: Bearer {alice}\r\n"
        f"Content-Type: application/json\r\nIdempotency-Key: retry-1\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(head.encode() + body)  # and hang up: the answer is lost
    try:
        first = messages(stream, 2)  # the lost request went through
        status, headers, answer = post_json(f"{server.base_url}/events", batch(1, 2), bearer(alice) | {"Idempotency-Key": "retry-1"})
        assert status == 201 and headers["Idempotent-Replayed"] == "true"
        assert answer["ids"] == [f.id for f in first[1:]]
        publish(server.base_url, alice, CHAN, {"n": 99})
        assert [f.json()["data"]["n"] for f in first + messages(stream, 99)] == [0, 1, 2, 99]
    finally:
        stream.close()
    replay = open_stream(server, alice, last_event_id=before)
    try:
        assert [f.json()["data"]["n"] for f in messages(replay, 99)] == [1, 2, 99]
    finally:
        replay.close()


def test_concurrent_duplicates_on_two_workers_store_once_and_answer_the_same_ids(server, alice):
    stream = open_stream(server, alice)
    url, headers = f"{server.base_url}/events", bearer(alice) | {"Idempotency-Key": "dup-1"}
    try:
        senders = [gevent.spawn(post_json, url, batch(1, 2), headers) for _ in range(8)]
        gevent.joinall(senders, timeout=20, raise_error=True)
        answers = [g.value for g in senders]
        assert all(status == 201 for status, _, _ in answers), answers
        assert len({tuple(body["ids"]) for _, _, body in answers}) == 1
        assert sum(h.get("Idempotent-Replayed") != "true" for _, h, _ in answers) == 1
        publish(server.base_url, alice, CHAN, {"n": 99})
        got = messages(stream, 99)
        assert [f.json()["data"]["n"] for f in got] == [1, 2, 99]
        assert [f.id for f in got[:2]] == answers[0][2]["ids"]
    finally:
        stream.close()
