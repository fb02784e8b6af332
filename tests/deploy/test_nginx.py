"""Through the shipped deploy/nginx.conf: no buffering, long-lived streams, resume, several hosts, clean logs."""

from __future__ import annotations

import time

import pytest
from support.http_json import post_json, request
from support.nginx import Nginx
from support.procs import REPO_ROOT, free_port, wait_until
from support.service import bearer, publish
from support.sse_client import SSEClient

from .conftest import NGINX_CONF, Deployment, connected_info, messages, next_message

pytestmark = pytest.mark.nginx


def open_stream(base: str, token: str, channels: str, **kwargs) -> SSEClient:
    headers = {**bearer(token), **kwargs.pop("headers", {})}
    client = SSEClient(f"{base}/stream?channels={channels}", headers, **kwargs)
    assert client.status == 200, client.body()
    return client


def test_each_event_arrives_within_a_second_of_publish(deployment: Deployment):
    token = deployment.token("nb-1")
    chan = "channel:nobuffer"
    with open_stream(deployment.base, token, chan) as client:
        assert client.headers["Content-Type"] == "text/event-stream; charset=utf-8"
        assert client.headers["X-Accel-Buffering"] == "no"  # passed on for an outer proxy
        assert client.headers.get("Content-Encoding") is None
        connected_info(client)
        for n in range(3):
            started = time.monotonic()
            cursor = publish(deployment.base, token, chan, {"n": n})
            frame = next_message(client, 1.0)
            assert frame is not None, f"event {n} not delivered within 1 s of publish"
            assert time.monotonic() - started < 1.0
            assert frame.id == cursor and frame.json()["data"] == {"n": n}


def test_stream_stays_open_across_heartbeats(deployment: Deployment):
    token = deployment.token("nb-2")
    chan = "channel:heartbeat"
    with open_stream(deployment.base, token, chan) as client:
        connected_info(client)
        times = client.wait_comments(4, timeout=8)  # HEARTBEAT_INTERVAL=1
        assert all(0.5 < b - a < 2.0 for a, b in zip(times, times[1:], strict=False)), times
        assert not client.closed
        cursor = publish(deployment.base, token, chan, {"after": "heartbeats"})
        assert next_message(client, 2).id == cursor


def test_resume_with_last_event_id_through_nginx(deployment: Deployment):
    token = deployment.token("nb-3")
    chan = "channel:resume"
    with open_stream(deployment.base, token, chan) as first:
        connected_info(first)
        ids = [publish(deployment.base, token, chan, {"n": n}) for n in range(3)]
        assert [f.id for f in messages(first, 3, 3)] == ids
        last = first.last_event_id
    missed = [publish(deployment.base, token, chan, {"n": n}) for n in range(3, 6)]
    with open_stream(deployment.base, token, chan, headers={"Last-Event-ID": last}) as second:
        info = connected_info(second)
        assert info["resumed"] is True
        replayed = messages(second, 3, 3)
        assert [f.id for f in replayed] == missed
        assert [f.json()["data"]["n"] for f in replayed] == [3, 4, 5]
        live = publish(deployment.base, token, chan, {"n": 6})
        assert next_message(second, 2).id == live


def test_clients_on_either_host_receive_every_event(deployment: Deployment):
    token = deployment.token("nb-4")
    chan = "channel:hosts"
    clients: list[SSEClient] = []
    try:
        by_host: dict[int, SSEClient] = {}
        while len(by_host) < 2 and len(clients) < 10:  # least_conn alternates; bounded anyway
            client = open_stream(deployment.base, token, chan)
            clients.append(client)
            cid = connected_info(client)["connection_id"]
            host = wait_until(lambda cid=cid: deployment.host_of(cid) + 1, 5, message="connection.open logged") - 1
            by_host.setdefault(host, client)
        assert set(by_host) == {0, 1}, "nginx should spread streams over both hosts"
        # Publish through nginx and straight to each host: every stream gets every event, in order.
        ids = [publish(deployment.base, token, chan, {"n": 0})]
        ids += [publish(h.base_url, token, chan, {"n": n}) for n, h in enumerate(deployment.hosts, 1)]
        for client in clients:
            got = messages(client, len(ids), 3)
            assert [f.id for f in got] == ids
            assert [f.json()["data"]["n"] for f in got] == [0, 1, 2]
    finally:
        for client in clients:
            client.close()


def test_access_log_holds_no_ticket_and_keeps_the_request_id(deployment: Deployment):
    token = deployment.token("nb-5")
    chan = "channel:logs"
    fake = "abc123secret"
    refused = SSEClient(f"{deployment.base}/stream?channels={chan}&ticket={fake}", timeout=5)
    assert refused.status == 401
    refused.close()
    status, _, body = post_json(f"{deployment.base}/tickets", {}, bearer(token))
    assert status == 200, body
    real = body["ticket"]
    rid = "rid-deploy-test-42"
    with SSEClient(f"{deployment.base}/stream?channels={chan}&ticket={real}", {"X-Request-ID": rid}, timeout=5) as client:
        assert client.status == 200
        assert client.headers["X-Request-ID"] == rid
        connected_info(client)
    assert request("GET", f"{deployment.base}/poll?channels={chan}&ticket={fake}").status == 401

    def logged() -> list[str]:
        lines = deployment.nginx.access_log_lines()
        done = any(f"request_id={rid}" in line for line in lines) and any("GET /poll " in line for line in lines)
        return lines if done else []

    lines = wait_until(logged, 5, message="the ticketed stream and the poll in the access log")
    text = "\n".join(lines + deployment.nginx.error_log_lines())
    assert fake not in text and real not in text and "ticket=" not in text
    assert any(f"request_id={rid}" in line and "GET /stream HTTP/1.1" in line for line in lines), lines
    # The app saw the same id and logged it with the stream.
    assert any(r.get("request_id") == rid and r.get("event") == "connection.open" for h in deployment.hosts for r in h.json_logs())


def test_static_files_are_served_by_nginx(deployment: Deployment):
    index = request("GET", f"{deployment.base}/")
    assert index.status == 200 and index.body == (REPO_ROOT / "static" / "index.html").read_bytes()
    script = request("GET", f"{deployment.base}/static/chatgenius-realtime.js")
    assert script.status == 200 and script.body == (REPO_ROOT / "static" / "chatgenius-realtime.js").read_bytes()
    lines = wait_until(lambda: [x for x in deployment.nginx.access_log_lines() if "chatgenius-realtime.js" in x], 5)
    assert "upstream=-" in lines[-1]  # no gunicorn host was asked


def test_no_host_up_answers_json_503(nginx_binary: str, tmp_path):
    with Nginx(NGINX_CONF, [free_port()], workdir=tmp_path / "nginx") as proxy:
        resp = request("GET", f"{proxy.base_url}/poll?channels=channel:x")
        assert resp.status == 503
        assert resp.headers["Content-Type"] == "application/json"
        assert resp.headers["Retry-After"] == "2"
        assert resp.json()["error"] == "unavailable"
