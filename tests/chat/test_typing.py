"""POST /typing end to end: two hosts (2 workers each) on one Redis."""

from __future__ import annotations

import time

from support.http_json import post_json
from support.service import bearer, publish

from .helpers import PUBLISHER, open_stream, token

CHAN = "channel:typing"


def typing(base: str, tok: str, channel: str = CHAN) -> tuple[int, dict]:
    status, _, body = post_json(f"{base}/typing", {"channel": channel}, bearer(tok))
    return status, body


def test_typing_reaches_other_subscribers_without_an_id(hosts):
    a, b = hosts
    alice = token(a.base_url, "ty-alice")
    bob = open_stream(b.base_url, token(b.base_url, "ty-bob"), CHAN)
    try:
        assert typing(a.base_url, alice) == (202, {"dropped": False})
        frame = bob.next_of("user.typing")
        assert frame.id is None
        envelope = frame.json()
        assert "id" not in envelope
        assert envelope["type"] == "user.typing" and envelope["channel"] == CHAN
        assert envelope["data"] == {"user_id": "ty-alice"}
    finally:
        bob.close()


def test_typing_is_throttled_per_user_and_channel_across_hosts(hosts):
    a, b = hosts
    alice = token(a.base_url, "ty-carol")
    watcher = open_stream(a.base_url, token(a.base_url, "ty-dave"), f"{CHAN},channel:typing-2")
    try:
        assert typing(a.base_url, alice) == (202, {"dropped": False})
        first_at = time.monotonic()
        # Within 2 s, on any worker of any host: dropped quietly.
        for base in (a.base_url, b.base_url, a.base_url):
            assert typing(base, alice) == (202, {"dropped": True})
        assert typing(b.base_url, alice, "channel:typing-2") == (202, {"dropped": False})  # per channel
        got = [watcher.next_of("user.typing").json()["channel"] for _ in range(2)]
        assert got == [CHAN, "channel:typing-2"]
        assert watcher.client.next(1.0) is None, "a throttled typing must not be delivered"
        time.sleep(max(0.0, first_at + 2.1 - time.monotonic()))
        assert typing(b.base_url, alice) == (202, {"dropped": False})  # the window has passed
        frame = watcher.next_of("user.typing")
        assert frame.json()["data"] == {"user_id": "ty-carol"}
    finally:
        watcher.close()


def test_typing_never_appears_on_resume(hosts):
    a, b = hosts
    pub = token(a.base_url, "ty-pub", permissions=PUBLISHER)
    first = publish(a.base_url, pub, CHAN, {"n": 1})
    assert typing(a.base_url, token(a.base_url, "ty-erin")) == (202, {"dropped": False})
    last = publish(a.base_url, pub, CHAN, {"n": 2})
    resumed = open_stream(b.base_url, token(b.base_url, "ty-frank"), CHAN, **{"Last-Event-ID": first})
    try:
        frames = []
        while (frame := resumed.client.next(1.0)) is not None:
            frames.append(frame)
        assert [f.id for f in frames if f.event == "message.created"] == [last]
        assert not [f for f in frames if f.event == "user.typing"]
    finally:
        resumed.close()


def test_typing_refuses_channels_the_caller_may_not_read(hosts):
    a, _ = hosts
    limited = token(a.base_url, "ty-gina", ["channel:general"])
    assert typing(a.base_url, limited, "channel:secret")[0] == 403
    assert typing(a.base_url, limited, "user:ty-gina")[0] == 202  # their own user channel is always readable
    status, _, body = post_json(f"{a.base_url}/typing", {"channel": "no spaces"}, bearer(limited))
    assert status == 400 and body["error"] == "bad_channel"
    status, _, body = post_json(f"{a.base_url}/typing", {"channel": CHAN})
    assert status == 401
