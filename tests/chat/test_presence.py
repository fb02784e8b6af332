"""Presence end to end: two hosts on one Redis (PRESENCE_GRACE=1.5, LEASE_TTL=2)."""

from __future__ import annotations

import time

from support.http_json import get_json
from support.service import bearer

from .conftest import PRESENCE_ENV
from .helpers import head, host, no_presence_of, open_stream, presence_of, token, worker_of

GRACE = float(PRESENCE_ENV["PRESENCE_GRACE"])
TTL = float(PRESENCE_ENV["LEASE_TTL"])


def online(base: str, tok: str, channel: str) -> list[str]:
    status, _, body = get_json(f"{base}/presence/{channel}", bearer(tok))
    assert status == 200, body
    return body["users"]


def presence_history(base: str, tok: str, channel: str, cursor: str, user: str) -> list[str]:
    status, _, body = get_json(f"{base}/poll?channels={channel}&cursor={cursor}&timeout=0", bearer(tok))
    assert status == 200, body
    return [e["data"]["status"] for e in body["events"] if e["type"] == "user.presence" and e["data"]["user_id"] == user]


def test_online_and_offline_across_two_hosts(hosts):
    a, b = hosts
    chan = "channel:pres-hosts"
    carol_tok = token(b.base_url, "pr-carol")
    alice_tok = token(a.base_url, "pr-alice")
    start = head(b.base_url, carol_tok, chan)
    carol = open_stream(b.base_url, carol_tok, chan)
    first = second = None
    try:
        first = open_stream(a.base_url, alice_tok, chan)
        frame = presence_of(carol, "pr-alice")
        assert frame.id is not None and frame.json()["data"] == {"user_id": "pr-alice", "status": "online"}
        assert online(b.base_url, carol_tok, chan) == ["pr-alice", "pr-carol"]

        second = open_stream(b.base_url, alice_tok, chan)  # another stream of hers, on the other host
        first.close()
        no_presence_of(carol, "pr-alice", GRACE + 1.0)  # one stream is still open: nothing
        assert "pr-alice" in online(a.base_url, alice_tok, chan)

        second.close()
        closed = time.monotonic()
        frame = presence_of(carol, "pr-alice", GRACE + 5)
        waited = time.monotonic() - closed
        assert frame.json()["data"] == {"user_id": "pr-alice", "status": "offline"}
        assert GRACE - 0.3 <= waited <= GRACE + 3, waited
        assert online(a.base_url, alice_tok, chan) == ["pr-carol"]
        assert presence_history(a.base_url, alice_tok, chan, start, "pr-alice") == ["online", "offline"]
    finally:
        for stream in (carol, first, second):
            if stream is not None:
                stream.close()


def test_reconnect_within_grace_announces_nothing(hosts):
    a, b = hosts
    chan = "channel:pres-flap"
    dave_tok = token(a.base_url, "pr-dave")
    erin_tok = token(a.base_url, "pr-erin")
    start = head(a.base_url, dave_tok, chan)
    dave = open_stream(a.base_url, dave_tok, chan)
    erin = None
    try:
        erin = open_stream(a.base_url, erin_tok, chan)
        presence_of(dave, "pr-erin")
        for base in (b.base_url, a.base_url, b.base_url):  # a flaky network: three quick reconnects
            erin.close()
            time.sleep(0.2)
            erin = open_stream(base, erin_tok, chan)
        no_presence_of(dave, "pr-erin", GRACE + 1.0)
        erin.close()
        erin = None
        assert presence_of(dave, "pr-erin", GRACE + 5).json()["data"]["status"] == "offline"
        no_presence_of(dave, "pr-erin", 1.0)
        assert presence_history(a.base_url, dave_tok, chan, start, "pr-erin") == ["online", "offline"]
    finally:
        dave.close()
        if erin is not None:
            erin.close()


def test_sigkilled_worker_users_go_offline_after_the_lease_ttl(hosts, module_redis):
    a, _ = hosts
    chan = "channel:pres-kill"
    frank_tok = token(a.base_url, "pr-frank")
    start = head(a.base_url, frank_tok, chan)
    frank = open_stream(a.base_url, frank_tok, chan)
    with host(module_redis.url, **PRESENCE_ENV) as c:
        gina = open_stream(c.base_url, token(c.base_url, "pr-gina"), chan)
        try:
            presence_of(frank, "pr-gina")
            c.kill_worker(worker_of(c, gina.id))
            killed = time.monotonic()
            assert gina.client.wait_closed(5)
            frame = presence_of(frank, "pr-gina", TTL + GRACE + 5)
            waited = time.monotonic() - killed
            assert frame.json()["data"]["status"] == "offline"
            # The lease was refreshed at most TTL/3 before the kill; then the grace runs.
            assert TTL * 2 / 3 + GRACE - 0.3 <= waited <= TTL + GRACE + 3, waited
            no_presence_of(frank, "pr-gina", 1.0)
            # Five sweepers (three instances) raced for it: announced exactly once.
            assert presence_history(a.base_url, frank_tok, chan, start, "pr-gina") == ["online", "offline"]
        finally:
            gina.close()
            frank.close()


def test_presence_needs_read_access(hosts):
    a, _ = hosts
    limited = token(a.base_url, "pr-hank", ["channel:general"])
    status, _, body = get_json(f"{a.base_url}/presence/channel:secret", bearer(limited))
    assert status == 403 and body["error"] == "forbidden"
    status, _, body = get_json(f"{a.base_url}/presence/channel:general", bearer(limited))
    assert status == 200 and body["users"] == []
    status, _, _ = get_json(f"{a.base_url}/presence/channel:general")
    assert status == 401
