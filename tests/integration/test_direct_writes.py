"""The bus reader writes frames straight to idle streams (chatgenius/wire.py), under real gunicorn.

What must hold whichever path a frame takes: every event once, in order, in
valid chunk framing; a stream whose socket fills falls back to its queue and
its own greenlet (including the rest of a chunk the reader could only partly
send) without losing or repeating a byte.
"""

from __future__ import annotations

import time

from support.gunicorn import Gunicorn
from support.procs import wait_until
from support.service import bearer, dev_token, publish, publish_batch, service_env
from support.sse_client import SSEClient

CHAN = "channel:general"


def summaries(g: Gunicorn) -> list[dict]:
    return [r for r in g.json_logs() if r.get("event") == "broadcast"]


def events(client: SSEClient, n: int, timeout: float = 30) -> list[int]:
    got: list[int] = []
    deadline = time.monotonic() + timeout
    while len(got) < n and time.monotonic() < deadline:
        frame = client.next(max(0.1, deadline - time.monotonic()))
        if frame is not None and frame.event == "message.created":
            got.append(frame.json()["data"]["n"])
    return got


def test_idle_streams_are_written_by_the_reader_every_event_once_in_order(redis_url):
    env = service_env(redis_url, BROADCAST_LOG_INTERVAL="0.2")
    with Gunicorn(workers=1, env=env) as g:
        token = dev_token(g.base_url, "alice", ["channel:*"], ["publish:events"])
        clients = [SSEClient(f"{g.base_url}/stream?channels={CHAN}", bearer(token), timeout=10) for _ in range(3)]
        for c in clients:
            assert c.read_until(lambda f: f.event == "system.connected", 5)
        for n in range(30):
            publish(g.base_url, token, CHAN, {"n": n})
            time.sleep(0.01)
        for c in clients:
            assert events(c, 30) == list(range(30))
        wait_until(lambda: sum(s["direct"] for s in summaries(g)) >= 90, 10, message="summary with direct writes")
        totals = {k: sum(s[k] for s in summaries(g)) for k in ("delivered", "direct")}
        # Every live frame here went out from the reader: the streams were idle each time.
        assert totals["direct"] >= 90 and totals["delivered"] >= totals["direct"]
        for c in clients:
            c.close()


def test_a_stalled_reader_falls_back_to_its_queue_and_then_gets_every_byte_once(redis_url):
    # The queue may hold everything (64 MiB), so nothing is dropped: the stream must
    # switch from direct writes to its queue when the socket fills, mid-chunk included,
    # and back, with valid framing throughout.
    env = service_env(redis_url, SSE_QUEUE_MAX_BYTES=str(64 << 20), BROADCAST_LOG_INTERVAL="0.2")
    with Gunicorn(workers=1, env=env) as g:
        token = dev_token(g.base_url, "alice", ["channel:*"], ["publish:events"])
        stalled = SSEClient(f"{g.base_url}/stream?channels={CHAN}", bearer(token), rcvbuf=4096, timeout=30)
        assert stalled.read_until(lambda f: f.event == "system.connected", 5)
        big = "y" * 3001  # odd sizes, so sends stop part-way through chunks
        total = 0
        for batch in range(200):  # ~6 MB: well past the socket buffers
            publish_batch(
                g.base_url, token,
                [{"channel": CHAN, "type": "message.created", "data": {"n": total + i, "pad": big}} for i in range(10)],
            )
            total += 10
        assert events(stalled, total, timeout=60) == list(range(total))
        wait_until(lambda: sum(s["delivered"] for s in summaries(g)) >= total, 10, message="summaries")
        totals = {k: sum(s[k] for s in summaries(g)) for k in ("delivered", "direct")}
        assert totals["direct"] > 0, "the reader wrote while the socket had room"
        assert totals["delivered"] > totals["direct"], "the stream's own loop wrote once the socket was full"
        publish(g.base_url, token, CHAN, {"n": total})  # and the stream is live afterwards
        assert events(stalled, 1) == [total]
        stalled.close()
