"""Resume and reset end to end over HTTP: real gunicorn (2 gevent workers) on a real Redis.

Multi-channel resume was proven at bus level only; here one stream on two
channels is cut and resumed with `Last-Event-ID`, and `/poll` and the stream
are driven into a reset by both ways history stops reaching back: trimmed past
HISTORY_MAXLEN and expired after HISTORY_TTL.
"""

from __future__ import annotations

import json

import redis
from support.gunicorn import Gunicorn
from support.http_json import get_json
from support.procs import wait_until
from support.service import bearer, dev_token, publish_batch, service_env

from .test_foundation import Client, open_stream

A, B, C = "channel:resume-a", "channel:resume-b", "channel:resume-c"


def events(channel_of: list[str]) -> list[dict]:
    return [{"channel": ch, "type": "message.created", "data": {"n": n}} for n, ch in enumerate(channel_of)]


def poll(base: str, token: str, channels: str, cursor: str) -> dict:
    status, _, body = get_json(f"{base}/poll?channels={channels}&cursor={cursor}&timeout=0", bearer(token))
    assert status == 200, body
    return body


def test_stream_on_two_channels_cut_and_resumed_with_last_event_id_gets_exactly_the_rest_of_both(redis_url):
    with Gunicorn(workers=2, env=service_env(redis_url)) as g:
        base = g.base_url
        token = dev_token(base, "resumer", ["channel:*"], ["publish:events"])
        client = open_stream(base, token, f"{A},{B}")
        order = [A, B, B, A, C, B, A, A, C, B] * 3  # C is published too but not subscribed: it must not appear
        ids = publish_batch(base, token, events(order))
        mine = [i for i, ch in zip(ids, order, strict=True) if ch != C]
        first = client.collect(7, timeout=5)
        client.close()
        assert [f.id for f in first] == mine[:7]
        more = publish_batch(base, token, events([B, A, C, B]))
        mine += [more[0], more[1], more[3]]

        resumed = open_stream(base, token, f"{A},{B}", **{"Last-Event-ID": first[-1].id})
        try:
            rest = resumed.collect(len(mine) - 7, timeout=5)
            assert [f.id for f in rest] == mine[7:]
            assert {f.json()["channel"] for f in rest} == {A, B}
            assert resumed.next(1.0) is None  # nothing after the rest: no duplicate, no C
            late = publish_batch(base, token, events([C, A]))
            assert resumed.next(5).id == late[1]
        finally:
            resumed.close()
        # Both workers served: the resume ran wherever gunicorn placed it; the log proves it was one.
        opened = [r for r in g.json_logs() if r.get("event") == "connection.open" and r.get("user_id") == "resumer"]
        assert [r["resumed"] for r in opened] == [False, True] and opened[1]["replayed"] == len(mine) - 7


def test_poll_answers_reset_for_a_channel_trimmed_past_history_maxlen(redis_url):
    with Gunicorn(workers=2, env=service_env(redis_url, HISTORY_MAXLEN="5")) as g:
        base = g.base_url
        token = dev_token(base, "poller", ["channel:*"], ["publish:events"])
        start = get_json(f"{base}/poll?channels={A},{B}", bearer(token))[2]["cursor"]
        ids = publish_batch(base, token, events([A] * 12 + [B] * 2))
        trimmed = poll(base, token, f"{A},{B}", start)
        assert trimmed["reset"] is True and trimmed["reset_channels"] == [A], trimmed
        assert [e["id"] for e in trimmed["events"]] == ids[12:]  # B's history still reaches back
        assert trimmed["cursor"] == ids[-1]
        # A cursor that history still covers: no reset, exactly the rest.
        recent = poll(base, token, A, ids[8])
        assert recent["reset"] is False and recent["reset_channels"] == [] and [e["id"] for e in recent["events"]] == ids[9:12]
        # The stream says the same for the same cursor.
        stream = open_stream(base, token, f"{A},{B}", **{"Last-Event-ID": start})
        try:
            reset = stream.next(5)
            assert reset.event == "system.reset" and json.loads(reset.data)["channels"] == [A], reset
            assert [f.id for f in stream.collect(2, timeout=5)] == ids[12:]
        finally:
            stream.close()


def test_history_expired_after_history_ttl_is_a_reset_on_poll_and_stream(redis_url):
    with Gunicorn(workers=2, env=service_env(redis_url, HISTORY_TTL="1")) as g:
        base = g.base_url
        token = dev_token(base, "expiry", ["channel:*"], ["publish:events"])
        start = get_json(f"{base}/poll?channels={A}", bearer(token))[2]["cursor"]
        ids = publish_batch(base, token, events([A] * 3))
        fresh = poll(base, token, A, start)  # the control: before expiry, history reaches back
        assert fresh["reset"] is False and [e["id"] for e in fresh["events"]] == ids
        r = redis.Redis.from_url(redis_url)
        wait_until(lambda: not r.exists("cg:h:{" + A + "}"), 10, message="HISTORY_TTL expired the channel's history")
        expired = poll(base, token, A, start)
        assert expired["reset"] is True and expired["reset_channels"] == [A] and expired["events"] == [], expired
        stream = Client(f"{base}/stream?channels={A}", {**bearer(token), "Last-Event-ID": start}, timeout=10)
        try:
            assert stream.next(5).event == "system.connected"
            reset = stream.next(5)
            assert reset.event == "system.reset" and json.loads(reset.data)["channels"] == [A], reset
            late = publish_batch(base, token, events([A]))
            assert stream.next(5).id == late[0]  # and the stream goes on live
        finally:
            stream.close()
