"""The client's network behaviour in Chromium against the real service (it was proven only with fake timers in node):
backoff with jitter while the server is down, a 429 honoured with its Retry-After, offline/online, and the
fallback to polling behind a proxy that buffers the stream.

Times come from the page's own fetch log (tests/browser/wire.py). Only lower bounds
and spreads are asserted, never "within X ms": a loaded machine can only lengthen
a wait, so these cannot fail from load, and each one fails when its behaviour is removed.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import pytest
from support.nginx import NGINX, Nginx
from support.procs import require_binary, wait_until
from support.service import bearer, dev_token
from support.sse_client import SSEClient

from .chat import ChatPage, assert_exactly_once_in_order, ids, numbered
from .wire import requests

pytestmark = pytest.mark.browser

CAP_MS = 2000


def test_backoff_while_the_server_is_down_is_jittered_and_keeps_trying(deploy, new_context) -> None:
    deployment = deploy()
    alice = ChatPage.open(new_context(), deployment.base_url, "alice", backoffCap=CAP_MS)
    alice.wait_status("open", "sse")
    published = numbered(deployment, "before", 2)
    alice.wait_messages(2)

    deployment.stop()
    down = len(requests(alice.page, "/stream"))
    # Attempts after the first few are all at the cap's ceiling: without jitter they would be evenly spaced.
    wait_until(lambda: len(requests(alice.page, "/stream")) >= down + 9, 60, 0.2, "nine attempts while the server is down")
    attempts = requests(alice.page, "/stream")[down:]
    assert all(a["error"] is not None for a in attempts), attempts  # each one failed: the port is closed
    starts = [a["at"] for a in attempts]
    gaps = [b - a for a, b in zip(starts[3:], starts[4:])]  # attempt >= 3: ceiling min(cap, base * 2^n) = cap
    spread = max(gaps) - min(gaps)
    assert spread >= 400, f"capped retries {gaps} ms apart: no jitter (full jitter spreads them over [0, {CAP_MS}))"
    assert statistics.pstdev(gaps) >= 150, gaps
    assert alice.status == "reconnecting"

    deployment.start()
    published += numbered(deployment, "after", 2)
    alice.wait_status("open", "sse", timeout=30)
    assert_exactly_once_in_order(ids(alice.wait_messages(4)), published, alice.wire_ids())


def test_a_429_is_honoured_with_its_retry_after(deploy, new_context) -> None:
    deployment = deploy(MAX_CONNECTIONS_PER_USER="1", LEASE_TTL="4")
    # alice's one slot is taken by a stream outside the browser: the page's stream gets the real 429.
    blocker = SSEClient(f"{deployment.base_url}/stream?channels=channel:general",
                        bearer(dev_token(deployment.base_url, "alice", ["channel:*"])), timeout=10)
    try:
        assert blocker.status == 200 and blocker.next(5).event == "system.connected"
        alice = ChatPage.open(new_context(), deployment.base_url, "alice", backoffCap=500)
        wait_until(lambda: len([r for r in requests(alice.page, "/stream") if r["status"] == 429]) >= 2, 30, 0.1,
                   "two 429s from the connection cap")
        alice.wait("() => window.chatDemo.rt.lastError?.status === 429")
        assert alice.status == "reconnecting"
    finally:
        blocker.close()
    alice.wait_status("open", "sse", timeout=30)
    attempts = requests(alice.page, "/stream")
    for refused, following in zip(attempts, attempts[1:]):
        if refused["status"] == 429:
            wait_ms = int(refused["retryAfter"]) * 1000
            assert wait_ms >= 1000, refused
            # The backoff cap (500 ms) is far below Retry-After: only honouring it explains the wait.
            # (`at` is taken when fetch is called; the 429 answered after that, so this is a lower bound.)
            assert following["at"] - refused["at"] >= wait_ms, (refused, following)
    published = numbered(deployment, "after-429", 2)
    assert_exactly_once_in_order(ids(alice.wait_messages(2)), published, alice.wire_ids())


def test_offline_stops_trying_and_online_resumes_from_the_cursor(deploy, new_context) -> None:
    deployment = deploy()
    context = new_context()
    alice = ChatPage.open(context, deployment.base_url, "alice", backoffCap=CAP_MS)
    alice.wait_status("open", "sse")
    published = numbered(deployment, "online", 2)
    alice.wait_messages(2)

    context.set_offline(True)
    alice.wait_status("offline")
    tried = len(requests(alice.page))
    published += numbered(deployment, "while-offline", 3)  # the server has them; the browser cannot hear
    time.sleep(3 * CAP_MS / 1000)  # three backoff ceilings: a client that kept retrying would have fetched
    assert requests(alice.page)[tried:] == [], "no fetch while the browser is offline"
    assert alice.status == "offline" and len(alice.messages()) == 2

    context.set_offline(False)
    alice.wait_status("open", "sse")
    published += numbered(deployment, "back", 2)
    assert_exactly_once_in_order(ids(alice.wait_messages(7)), published, alice.wire_ids())
    assert [s for s in alice.statuses() if s in ("offline", "open")][-2:] == ["offline", "open"]
    opened = deployment.log_events("connection.open", "alice")
    assert opened[-1]["resumed"] is True and opened[-1]["replayed"] >= 3, opened


BUFFERING_PROXY = """\
events {}
http {
    upstream app {
        server 127.0.0.1:1;  # test:upstream
    }
    server {
        listen 127.0.0.1:1;  # test:listen
        location / {
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            # What a careless proxy does to a stream: buffer it and compress it whole, whatever the
            # app asks (X-Accel-Buffering: no is ignored; gzip holds the body until its buffer fills).
            proxy_buffering on;
            proxy_ignore_headers X-Accel-Buffering;
            gzip on;
            gzip_types text/event-stream application/json;
            gzip_min_length 0;
            gzip_buffers 16 64k;
            postpone_output 0;  # the headers go out at once; only the body is held
            proxy_buffer_size 64k;
            proxy_buffers 8 64k;
            proxy_busy_buffers_size 128k;
            proxy_read_timeout 300s;
        }
    }
}
"""


def test_behind_a_buffering_proxy_the_client_falls_back_to_polling_and_loses_nothing(deploy, new_context, tmp_path: Path) -> None:
    require_binary("nginx", NGINX)
    deployment = deploy()
    template = tmp_path / "buffering.conf"
    template.write_text(BUFFERING_PROXY)
    with Nginx(template, [deployment.port], workdir=tmp_path / "nginx") as proxy:
        alice = ChatPage.open(new_context(), proxy.base_url, "alice", firstByte=2000)
        alice.wait_status("polling", "poll", timeout=30)
        why = alice.page.evaluate("() => window.chatDemo.statuses.map((s) => s.lastError?.kind ?? null)")
        assert "first-byte-timeout" in why, why  # headers, then no byte: the client named the proxy's fault
        streamed = requests(alice.page, "/stream")
        assert streamed and streamed[0]["status"] == 200, streamed  # headers came through; the body never did
        alice.wait_cursor()
        published = numbered(deployment, "buffered", 4)
        assert_exactly_once_in_order(ids(alice.wait_messages(4)), published, alice.wire_ids())
        # It stays on polling (a buffering proxy does not heal itself): no new stream attempt meanwhile.
        assert len(requests(alice.page, "/stream")) == len(streamed)
        assert [r["via"] for r in alice.page.evaluate("() => window.__wire") if r["event"] == "message.created"] == ["poll"] * 4
