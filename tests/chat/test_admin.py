"""The admin API end to end: every stream on every worker and host; kicking one wherever it is."""

from __future__ import annotations

import pytest
from support.http_json import get_json, request
from support.service import bearer, publish

from .helpers import ADMIN, PUBLISHER, open_stream, streams_on_every_worker, token, worker_of


@pytest.mark.parametrize(
    "method, path, body",
    [
        ("GET", "/admin/connections", None),
        ("DELETE", "/admin/connections/0123456789abcdef", None),
        ("GET", "/admin/flags", None),
        ("PUT", "/admin/flags", b'{"ENABLE_SSE": false}'),
    ],
)
def test_admin_endpoints_refuse_users_without_admin_sse(hosts, method, path, body):
    a, _ = hosts
    headers = {"Content-Type": "application/json"}
    user = token(a.base_url, "adm-user", permissions=["publish:events"])
    resp = request(method, a.base_url + path, body, {**headers, **bearer(user)})
    assert resp.status == 403 and resp.json()["error"] == "forbidden"
    resp = request(method, a.base_url + path, body, headers)
    assert resp.status == 401
    status, _, flags = get_json(f"{a.base_url}/admin/flags", bearer(token(a.base_url, "adm-root", permissions=ADMIN)))
    assert status == 200 and flags["ENABLE_SSE"] is True  # nothing was changed by the refused calls


def test_admin_lists_every_stream_on_every_worker_and_host(hosts):
    a, b = hosts
    alice = token(a.base_url, "adm-alice")
    admin = token(b.base_url, "adm-root", permissions=ADMIN)
    on_a = streams_on_every_worker(a, alice, "channel:adm-list")
    on_b = streams_on_every_worker(b, alice, "channel:adm-list")
    streams = on_a + on_b
    try:
        # One event every stream has read: each row's events_sent counts it and its queue is empty.
        sent = publish(a.base_url, token(a.base_url, "adm-pub", permissions=PUBLISHER), "channel:adm-list", {"n": 1})
        for stream in streams:
            stream.next_of("message.created", pred=lambda f: f.id == sent)
        status, _, body = get_json(f"{a.base_url}/admin/connections", bearer(admin))
        assert status == 200 and body["processes"] == 4
        mine = {row["id"]: row for row in body["connections"] if row["user_id"] == "adm-alice"}
        assert set(mine) == {s.id for s in streams}
        pids = {s.id: worker_of(a, s.id) for s in on_a} | {s.id: worker_of(b, s.id) for s in on_b}
        for stream in streams:
            row = mine[stream.id]
            assert row["channels"] == ["channel:adm-list"] and row["resumed"] is False
            assert row["worker"] == pids[stream.id] and row["host"]
            assert row["opened"] > 0 and row["events_sent"] >= 1 and row["queue_depth"] == 0, row
        assert {row["worker"] for row in mine.values()} == set(a.worker_pids()) | set(b.worker_pids())
    finally:
        for stream in streams:
            stream.close()


def test_admin_kicks_a_stream_served_by_the_other_host(hosts):
    a, b = hosts
    bob = token(a.base_url, "adm-bob")
    admin = token(a.base_url, "adm-root", permissions=ADMIN)
    victim = open_stream(b.base_url, bob, "channel:adm-kick")
    bystander = open_stream(b.base_url, bob, "channel:adm-kick")
    try:
        resp = request("DELETE", f"{a.base_url}/admin/connections/{victim.id}", None, bearer(admin))
        assert resp.status == 200, resp.text
        assert resp.json()["id"] == victim.id and resp.json()["worker"] == worker_of(b, victim.id)
        frame = victim.next_of("system.reconnect")
        # RECONNECT_RETRY_MS (default 2000) jittered by ±50 %.
        assert frame.id is None and 1000 <= frame.json()["retry_ms"] <= 3000, frame.data
        assert victim.client.wait_closed(5)
        assert request("DELETE", f"{a.base_url}/admin/connections/{victim.id}", None, bearer(admin)).status == 404
        bystander.client.next(0.3)
        assert not bystander.client.closed
    finally:
        victim.close()
        bystander.close()
