"""Idle streams detached from gunicorn's pool (DETACH_IDLE_STREAMS), under real gunicorn.

A detached stream no longer holds a slot of gunicorn's greenlet pool, so the
pool cannot bound the streams a worker holds: the service does, at gunicorn's
worker_connections (503 `at_capacity` beyond, a slot freed when one closes).
"""

from __future__ import annotations

from support.gunicorn import Gunicorn
from support.procs import wait_until
from support.service import bearer, dev_token, publish, service_env
from support.sse_client import SSEClient

CHAN = "channel:general"


def test_a_worker_holds_at_most_worker_connections_streams_though_they_leave_the_pool(redis_url):
    env = service_env(redis_url, WORKER_CONNECTIONS="4")
    with Gunicorn(workers=1, env=env) as g:
        token = dev_token(g.base_url, "alice", ["channel:*"], ["publish:events"])
        clients = []
        for _ in range(4):
            c = SSEClient(f"{g.base_url}/stream?channels={CHAN}", bearer(token), timeout=10)
            assert c.status == 200 and c.read_until(lambda f: f.event == "system.connected", 5)
            clients.append(c)
        refused = SSEClient(f"{g.base_url}/stream?channels={CHAN}", bearer(token), timeout=10)
        assert refused.status == 503 and refused.json_body()["error"] == "at_capacity"
        refused.close()
        # Every held stream is live (written by the hub, no greenlet each), and one closing frees a slot.
        publish(g.base_url, token, CHAN, {"n": 1})
        for c in clients:
            assert c.read_until(lambda f: f.event == "message.created", 5).json()["data"]["n"] == 1
        clients.pop().close()

        def reopened() -> SSEClient | None:
            c = SSEClient(f"{g.base_url}/stream?channels={CHAN}", bearer(token), timeout=10)
            if c.status == 200:
                return c
            c.close()
            return None

        clients.append(wait_until(reopened, 10, message="a slot freed by a closed stream"))
        for c in clients:
            c.close()
