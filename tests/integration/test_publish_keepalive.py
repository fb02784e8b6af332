"""Publishers keep their connection: many POST /events on one keep-alive connection, direct and through nginx.

A backend publishing chat messages should pay for a TCP connection once, not
per event: through gunicorn's gevent worker (the fast path and the full path
alike, refusals included), and through the shipped deploy/nginx.conf, whose
upstream keeps idle connections to gunicorn (`keepalive`), so nginx does not
open one per publish either.
"""

from __future__ import annotations

import http.client
import json
import time

import psutil
import pytest
from support.gunicorn import Gunicorn
from support.nginx import NGINX, Nginx
from support.procs import REPO_ROOT, require_binary, wait_until
from support.service import bearer, dev_token, publish_request_counts, service_env
from support.sse_client import SSEClient

CHAN = "channel:keepalive"


def post(conn: http.client.HTTPConnection, token: str, body: object) -> tuple[int, dict, dict]:
    conn.request("POST", "/events", json.dumps(body), {**bearer(token), "Content-Type": "application/json"})
    resp = conn.getresponse()
    return resp.status, dict(resp.getheaders()), json.loads(resp.read())


def publish_over_one_connection(host: str, port: int, token: str) -> list[str]:
    """30 publishes (singles, a batch, refusals between them) on one connection; the cursors in order."""
    conn = http.client.HTTPConnection(host, port, timeout=10)
    conn.connect()
    sock = conn.sock
    ids: list[str] = []
    for n in range(30):
        if n % 10 == 5:  # a refusal answered by the fast path, then one by Flask: the connection stays
            status, headers, body = post(conn, token, {"channel": CHAN, "type": "no.such", "data": {}})
            assert status == 400 and body["error"] == "bad_type", body
            status, headers, body = post(conn, token, {"events": []})
            assert status == 400, body
        if n == 20:
            batch = [{"channel": CHAN, "type": "message.created", "data": {"n": 100 + k}} for k in range(5)]
            status, headers, body = post(conn, token, {"events": batch})
        else:
            status, headers, body = post(conn, token, {"channel": CHAN, "type": "message.created", "data": {"n": n}})
        assert status == 201, body
        assert headers.get("Connection", "").lower() != "close", headers
        ids += body["ids"]
        assert conn.sock is sock, f"the connection was replaced after publish {n}"
    conn.close()
    return ids


def received(client: SSEClient, n: int) -> list[int]:
    got: list[int] = []
    deadline = time.monotonic() + 20
    while len(got) < n and time.monotonic() < deadline:
        frame = client.next(1.0)
        if frame is not None and frame.event == "message.created":
            got.append(frame.json()["data"]["n"])
    return got


EXPECTED = [*range(20), *range(100, 105), *range(21, 30)]


def test_one_keepalive_connection_carries_every_publish_to_gunicorn(redis_url):
    with Gunicorn(workers=2, env=service_env(redis_url)) as g:
        token = dev_token(g.base_url, "pub", ["channel:*"], ["publish:events"])
        with SSEClient(f"{g.base_url}/stream?channels={CHAN}", bearer(token), timeout=10) as client:
            assert client.status == 200
            ids = publish_over_one_connection("127.0.0.1", g.port, token)
            assert received(client, len(EXPECTED)) == EXPECTED
            assert client.next(0.5) is None or client.next(0.5).event != "message.created"
        seqs = [int(i.rsplit("-", 1)[1]) for i in ids]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(EXPECTED)


def upstream_sockets(port: int) -> list:
    """Every TCP socket on the machine with `port` at either end, listening ones aside (TIME_WAIT included)."""
    return [
        c for c in psutil.net_connections(kind="tcp")
        if c.status != psutil.CONN_LISTEN and (c.laddr and c.laddr.port == port or c.raddr and c.raddr.port == port)
    ]


def _ends(conn) -> tuple:
    """A socket's two addresses: the same for the socket until it is gone (TIME_WAIT included)."""
    return (tuple(conn.laddr or ()), tuple(conn.raddr or ()))


@pytest.mark.nginx
def test_nginx_reuses_its_upstream_connections_for_publishes(redis_url, tmp_path):
    require_binary("nginx", NGINX)
    with Gunicorn(workers=1, env=service_env(redis_url), workdir=tmp_path / "app") as g:
        with Nginx(REPO_ROOT / "deploy" / "nginx.conf", [g.port], workdir=tmp_path / "nginx") as proxy:
            token = dev_token(proxy.base_url, "pub", ["channel:*"], ["publish:events"])
            wait_until(lambda: len(upstream_sockets(g.port)) <= 4, timeout=10)
            with SSEClient(f"{proxy.base_url}/stream?channels={CHAN}", bearer(token), timeout=10) as client:
                assert client.status == 200
                before = {_ends(c) for c in upstream_sockets(g.port)}
                host, port = proxy.base_url.removeprefix("http://").split(":")
                publish_over_one_connection(host, int(port), token)
                # Read at once: the publishes' own upstream connection is closed after 4 s idle.
                held = upstream_sockets(g.port)
                assert received(client, len(EXPECTED)) == EXPECTED

                # 36 requests went upstream, one after another. Without upstream keepalive each opens
                # a connection of its own, closed after its answer (36 new sockets, in TIME_WAIT); with
                # it they share one. That one may be new: each nginx worker keeps its own idle
                # connections, the stream may have taken the token request's, and nginx closes one
                # left idle for its keepalive_timeout (4 s in deploy/nginx.conf). Connections older
                # than the publishes may close meanwhile; that is the timeout, not one per request.
                fresh = [c for c in held if _ends(c) not in before]
                shown = [(c.laddr, c.raddr, c.status) for c in held]
                assert len(fresh) <= 2, shown  # both ends of one connection to gunicorn
                assert all(c.status == psutil.CONN_ESTABLISHED for c in fresh), shown
                assert sum(c.status == psutil.CONN_ESTABLISHED for c in held) <= 6, shown

                # Every publish (this gunicorn's only ones) was read by the worker's lean path, on upstream
                # connections that carried other requests too (the tokens, the stream, the metrics): the
                # worker goes back to it after each. Asked after the count above: it adds requests.
                ops = dev_token(proxy.base_url, "ops", [], ["admin:sse"])
                assert wait_until(lambda: publish_request_counts(proxy.base_url, ops)["server"] >= 36, timeout=10)
                time.sleep(1.2)  # one more flush of the counters
                assert publish_request_counts(proxy.base_url, ops) == {"server": 36, "wsgi": 0, "flask": 0}
