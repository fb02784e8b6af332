"""The foundation end to end: real gunicorn (2 gevent workers), real Redis, raw-socket clients."""

from __future__ import annotations

import subprocess
import time

import pytest
import redis
from support.gunicorn import Gunicorn
from support.http_json import get_json, post_json
from support.procs import wait_until
from support.service import bearer, dev_token, publish, publish_batch, service_env
from support.sse_client import SSEClient

CHAN = "channel:general"


class Client(SSEClient):
    """An SSE client that skips `user.presence`: the service announces a stream's user on its
    channels, and these tests count only the events they publish themselves."""

    def next(self, timeout: float | None = None):
        while True:
            frame = super().next(timeout)
            if frame is None or frame.event != "user.presence":
                return frame


def open_stream(base: str, token: str, channels: str = CHAN, **headers: str) -> SSEClient:
    client = Client(f"{base}/stream?channels={channels}", {**bearer(token), **headers}, timeout=10)
    assert client.status == 200, client.json_body()
    connected = client.next(5)
    assert connected is not None and connected.event == "system.connected"
    return client


def numbers(frames) -> list[int]:
    return [f.json()["data"]["n"] for f in frames]


def test_stream_headers_first_frames_and_heartbeat(server, alice):
    client = Client(f"{server.base_url}/stream?channels={CHAN}", bearer(alice))
    try:
        assert client.status == 200
        assert client.headers["Content-Type"] == "text/event-stream; charset=utf-8"
        assert client.headers["Cache-Control"] == "no-cache, no-transform"
        assert client.headers["X-Accel-Buffering"] == "no"
        first = client.next(5)
        assert first.event == "system.connected" and first.id is None
        assert client.retry is not None and 500 <= client.retry <= 3000
        info = first.json()
        assert info["user_id"] == "alice" and info["channels"] == [CHAN] and info["resumed"] is False
        assert info["heartbeat_interval"] == 1.0 and len(info["connection_id"]) >= 16
        times = client.wait_comments(3, timeout=6)
        assert 0.5 < times[2] - times[1] < 2.0
    finally:
        client.close()


def test_event_published_on_one_worker_reaches_streams_on_both(server, alice):
    def opened_pids() -> set[int]:
        return {r["pid"] for r in server.json_logs() if r.get("event") == "connection.open"}

    clients = []
    try:
        # gevent workers accept greedily: open streams until both workers hold some (bounded).
        while len(opened_pids()) < 2 and len(clients) < 100:
            clients.append(open_stream(server.base_url, alice))
            wait_until(lambda: sum(r.get("event") == "connection.open" for r in server.json_logs()) >= len(clients), 5)
        assert opened_pids() == set(server.worker_pids()), "streams should be spread over both workers"
        ids = [publish(server.base_url, alice, CHAN, {"n": n}) for n in range(5)]
        for client in clients:
            got = client.collect(5, timeout=5)
            assert [f.id for f in got] == ids and numbers(got) == list(range(5))
    finally:
        for client in clients:
            client.close()


def test_two_instances_share_one_redis(redis_url):
    with Gunicorn(workers=1, env=service_env(redis_url)) as a, Gunicorn(workers=1, env=service_env(redis_url)) as b:
        token_a = dev_token(a.base_url, "alice", ["channel:*"], ["publish:events"])
        token_b = dev_token(b.base_url, "bob", ["channel:*"])
        client = open_stream(b.base_url, token_a)  # a token minted on host A verifies on host B
        other = open_stream(b.base_url, token_b)
        try:
            ident = publish(a.base_url, token_a, CHAN, {"n": 1})
            for c in (client, other):
                got = c.collect(1, timeout=5)[0]
                assert got.id == ident and got.json()["data"] == {"n": 1}
        finally:
            client.close()
            other.close()


def test_cut_after_20_of_50_and_resume_gets_exactly_the_rest(server, alice):
    base = server.base_url
    client = open_stream(base, alice)
    ids = publish_batch(base, alice, [{"channel": CHAN, "type": "message.created", "data": {"n": n}} for n in range(50)])
    first = client.collect(20, timeout=5)
    client.close()
    assert [f.id for f in first] == ids[:20]
    more = [publish(base, alice, CHAN, {"n": n}) for n in range(50, 55)]
    resumed = open_stream(base, alice, **{"Last-Event-ID": first[-1].id})
    try:
        rest = resumed.collect(35, timeout=5)
        assert [f.id for f in rest] == ids[20:] + more
        assert numbers(rest) == list(range(20, 55))
        assert resumed.next(1.5) is None  # nothing after the rest: no duplicates
        late = publish(base, alice, CHAN, {"n": 55})
        assert resumed.next(5).id == late
    finally:
        resumed.close()


def test_resume_from_query_parameter_on_first_connect(server, alice):
    base = server.base_url
    ids = [publish(base, alice, CHAN, {"n": n}) for n in range(3)]
    client = Client(f"{base}/stream?channels={CHAN}&last_event_id={ids[0]}", bearer(alice))
    try:
        assert client.next(5).json()["resumed"] is True
        assert [f.id for f in client.collect(2, timeout=5)] == ids[1:]
    finally:
        client.close()


def test_stream_id_as_poll_cursor_returns_exactly_the_rest(server, alice):
    base = server.base_url
    client = open_stream(base, alice)
    ids = [publish(base, alice, CHAN, {"n": n}) for n in range(10)]
    seen = client.collect(4, timeout=5)
    client.close()
    status, _, body = get_json(f"{base}/poll?channels={CHAN}&cursor={seen[-1].id}&timeout=0", bearer(alice))
    assert status == 200 and body["reset"] is False
    assert [e["id"] for e in body["events"]] == ids[4:]
    assert body["cursor"] == ids[-1]
    status, _, empty = get_json(f"{base}/poll?channels={CHAN}&cursor={body['cursor']}&timeout=0.2", bearer(alice))
    assert status == 200 and empty["events"] == [] and empty["cursor"] == ids[-1]


def test_long_poll_returns_as_soon_as_an_event_arrives(server, alice):
    import gevent

    base = server.base_url
    status, _, start = get_json(f"{base}/poll?channels={CHAN}", bearer(alice))
    assert status == 200 and start["events"] == []
    later = gevent.spawn_later(0.5, publish, base, alice, CHAN, {"n": 1})
    status, _, body = get_json(f"{base}/poll?channels={CHAN}&cursor={start['cursor']}&timeout=10", bearer(alice))
    ident = later.get(timeout=5)
    assert status == 200 and [e["id"] for e in body["events"]] == [ident]


def test_redis_connections_do_not_grow_with_open_streams(server, alice, redis_url):
    r = redis.Redis.from_url(redis_url)
    # Warm both workers' pools the way the measured step uses them: 200 streams opened one after
    # another (a stream's setup overlaps the next opens, more so on a slow box, and each overlap may
    # take a pooled connection), publishes, and two rounds of the periodic jobs (which wake together
    # on one grid, so their connections are in use at the same moment). Then 200 more streams must
    # not add more than a command connection or two per worker: a connection per stream would add 200.
    warm = [open_stream(server.base_url, alice) for _ in range(200)]
    for n in range(4):
        publish(server.base_url, alice, CHAN, {"n": -n})
    assert all(len(c.collect(4, timeout=10)) == 4 for c in warm)
    time.sleep(2.5)
    before = len(r.client_list())
    clients = [open_stream(server.base_url, alice) for _ in range(200)]
    try:
        ident = publish(server.base_url, alice, CHAN, {"n": 1})
        assert all(c.collect(1, timeout=10)[0].id == ident for c in clients)
        assert len(r.client_list()) <= before + 4  # at most a command connection or two per worker
        assert r.pubsub_numsub(f"cg:l:{CHAN}")[0][1] <= 2  # one subscription per worker
    finally:
        for c in clients + warm:
            c.close()
    wait_until(lambda: r.pubsub_numsub(f"cg:l:{CHAN}")[0][1] == 0, 10, message="subscriptions released")


def test_slow_client_is_disconnected_and_released(redis_url):
    env = service_env(redis_url, SSE_QUEUE_MAX_BYTES="65536")
    with Gunicorn(workers=1, env=env) as g:
        token = dev_token(g.base_url, "alice", ["channel:*"], ["publish:events"])
        slow = SSEClient(f"{g.base_url}/stream?channels={CHAN}", bearer(token), rcvbuf=4096)
        big = "x" * 4000
        for _ in range(250):  # 10 MB: more than the socket buffers plus the queue bound
            publish_batch(g.base_url, token, [{"channel": CHAN, "type": "message.created", "data": {"t": big}}] * 10)
        wait_until(
            lambda: any(r.get("event") == "connection.close" and r.get("reason") == "slow_consumer" for r in g.json_logs()),
            30,
            message="slow consumer closed",
        )
        r = redis.Redis.from_url(redis_url)
        wait_until(lambda: r.pubsub_numsub(f"cg:l:{CHAN}")[0][1] == 0, 10, message="subscription released")
        slow.abort()


def test_sse_disabled_answers_503_with_poll_url(redis_url):
    with Gunicorn(workers=1, env=service_env(redis_url, ENABLE_SSE="false")) as g:
        token = dev_token(g.base_url, "alice", ["channel:*"])
        status, _, body = get_json(f"{g.base_url}/stream?channels={CHAN}", bearer(token))
        assert status == 503 and body["error"] == "sse_disabled" and body["poll_url"] == "/poll"
        _, _, config = get_json(f"{g.base_url}/client-config")
        assert config["transport"] == "poll"


@pytest.mark.parametrize(
    "path, status, code",
    [
        (f"/stream?channels={CHAN}&last_event_id=garbage", 400, "bad_cursor"),
        ("/stream?channels=channel:secret", 403, "forbidden"),
        ("/stream?channels=Not%20A%20Channel", 400, "bad_channels"),
        ("/stream", 400, "bad_channels"),
        (f"/poll?channels={CHAN}&cursor=x-y-z", 400, "bad_cursor"),
        (f"/poll?channels={CHAN}&timeout=31", 400, "bad_timeout"),
    ],
)
def test_bad_requests_get_json_errors(redis_url, path, status, code, shared_server):
    token = dev_token(shared_server.base_url, "bob", ["channel:general"])
    got, _, body = get_json(shared_server.base_url + path, bearer(token))
    assert (got, body["error"]) == (status, code) and body["message"]


@pytest.fixture(scope="module")
def shared_server(redis_server):
    with Gunicorn(workers=1, env=service_env(redis_server.url)) as g:
        yield g



def test_unauthenticated_is_401(shared_server):
    status, headers, body = get_json(f"{shared_server.base_url}/stream?channels={CHAN}")
    assert status == 401 and body["error"] == "unauthorized" and "Bearer" in headers["WWW-Authenticate"]


def test_publish_validation_refuses_the_whole_batch(shared_server):
    base = shared_server.base_url
    token = dev_token(base, "svc", ["channel:*"], ["publish:events"])
    reader = dev_token(base, "reader", ["channel:*"])
    _, _, start = get_json(f"{base}/poll?channels={CHAN}", bearer(token))
    good = {"channel": CHAN, "type": "message.created", "data": {"n": 1}}
    cases = [
        ({"events": [good, {**good, "type": "message.exploded"}]}, 400, "bad_type"),
        ({"events": [good, {**good, "data": {"t": "x" * 70000}}]}, 413, "too_large"),
        ({"events": [good, {**good, "channel": "no spaces allowed"}]}, 400, "bad_channel"),
        ({"events": [good, {**good, "data": [1, 2]}]}, 400, "bad_data"),
        ({**good, "type": "system.connected"}, 400, "bad_type"),
        ({"events": [good] * 101}, 413, "too_many_events"),
    ]
    for body, status, code in cases:
        got, _, answer = post_json(f"{base}/events", body, bearer(token))
        assert (got, answer["error"]) == (status, code), answer
    got, _, answer = post_json(f"{base}/events", good, bearer(reader))
    assert got == 403 and answer["error"] == "forbidden"
    _, _, after = get_json(f"{base}/poll?channels={CHAN}&cursor={start['cursor']}&timeout=0", bearer(token))
    assert after["events"] == [], "nothing may be published from a refused batch"


def test_framing_injection_arrives_as_one_data_line(shared_server):
    base = shared_server.base_url
    token = dev_token(base, "svc", ["channel:*"], ["publish:events"])
    client = open_stream(base, token)
    evil = ["\n\nevent: evil\ndata: x", "\r", "\r\n\r\nid: 999", "\u2028\u2029", "\x00nul", "é漢字🙂"]
    try:
        for text in evil:
            publish(base, token, CHAN, {"text": text})
        got = client.collect(len(evil), timeout=5)
        assert [f.event for f in got] == ["message.created"] * len(evil)
        assert [f.json()["data"]["text"] for f in got] == evil
        assert client.next(0.5) is None
    finally:
        client.close()


def test_several_workers_without_redis_refuse_to_start(tmp_path):
    env = {**service_env(None), "WEB_CONCURRENCY": "2"}
    g = Gunicorn(workers=2, env=env, startup_timeout=8)
    try:
        with pytest.raises(AssertionError) as info:
            g.start()
        assert "REDIS_URL" in str(info.value)
    finally:
        g.close()


def test_embedded_default_serves_demo_and_events(tmp_path, repo_root):
    import sys

    from support.procs import free_port

    port = free_port()
    env = {"BIND": f"127.0.0.1:{port}", "PATH": "/usr/bin:/bin"}
    proc = subprocess.Popen([sys.executable, "app.py"], cwd=repo_root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: get_json(f"{base}/healthz")[0] == 200, 15, ignore=(OSError,))
        from support.http_json import request

        page = request("GET", base + "/")
        assert page.status == 200 and b"<title>ChatGenius" in page.body
        token = dev_token(base, "alice", ["channel:*"], ["publish:events"])
        client = open_stream(base, token)
        ident = publish(base, token, CHAN, {"text": "hello"})
        assert client.collect(1, timeout=5)[0].id == ident
        client.close()
    finally:
        proc.terminate()
        proc.wait(10)
