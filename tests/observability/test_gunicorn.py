"""Metrics and logs of the real deployment: gunicorn with 2 gevent workers, real Redis, raw sockets.

Numbers are read the way Prometheus reads them (`/metrics`, prometheus_client's parser) and
compared with what the clients saw; log lines are read from the worker output as JSON.
"""

from __future__ import annotations

import itertools
import json
import re
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from support.gunicorn import Gunicorn
from support.http_json import get_json, request
from support.procs import REPO_ROOT, wait_until
from support.redis_server import RedisServer
from support.service import bearer, dev_token, publish, service_env
from support.sse_client import SSEClient

CHAN = "channel:general"
ENV = {"HEARTBEAT_INTERVAL": "0.5", "LOG_LEVEL": "DEBUG", "BROADCAST_LOG_INTERVAL": "0.5"}


class Scrape:
    """One /metrics answer: every sample, summed over the label values a lookup leaves open."""

    def __init__(self, base: str, auth: dict[str, str]) -> None:
        resp = request("GET", base + "/metrics", headers=auth)
        assert resp.status == 200, resp.text
        self.samples = [s for f in text_string_to_metric_families(resp.text) for s in f.samples]

    def __call__(self, name: str, **labels: str) -> float:
        return sum(s.value for s in self.samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))

    def names(self) -> set[str]:
        return {s.name for s in self.samples}

    def by(self, name: str, label: str) -> dict[str, float]:
        return {s.labels[label]: s.value for s in self.samples if s.name == name}


class Watch:
    """Scrapes /metrics the way Prometheus does (with an admin:sse token) and waits for values."""

    def __init__(self, base: str, admin_token: str) -> None:
        self.base = base
        self.auth = bearer(admin_token)

    def __call__(self) -> Scrape:
        return Scrape(self.base, self.auth)

    def settle(self, name: str, expected: float, timeout: float = 10.0, **labels: str) -> None:
        """Wait until a metric reaches `expected` (metrics move just after the client saw the effect)."""
        seen: list[float] = []

        def reached() -> bool:
            seen.append(self()(name, **labels))
            return seen[-1] == expected

        try:
            wait_until(reached, timeout, 0.1, f"{name}{labels or ''} == {expected}")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; last value {seen[-1] if seen else None}") from None


@pytest.fixture(scope="module")
def redis_server_module(redis_server: RedisServer) -> RedisServer:
    with redis_server.client() as client:
        client.flushall()
    return redis_server


@pytest.fixture(scope="module")
def server(redis_server_module: RedisServer) -> Iterator[Gunicorn]:
    with Gunicorn(workers=2, env=service_env(redis_server_module.url, **ENV)) as g:
        yield g


@pytest.fixture(scope="module")
def minted() -> list[str]:
    """Every credential handed out in this module, to prove none reaches a log line."""
    return []


@pytest.fixture(scope="module")
def token(server: Gunicorn, minted: list[str]) -> Callable[..., str]:
    def make(sub: str, permissions: list[str] | None = None, channels: list[str] | None = None) -> str:
        value = dev_token(server.base_url, sub, ["channel:*"] if channels is None else channels, permissions or [])
        minted.append(value)
        return value

    return make


@pytest.fixture(scope="module")
def watch(server: Gunicorn, token) -> Watch:
    watch = Watch(server.base_url, token("prometheus", ["admin:sse"], channels=[]))
    watch.settle("chatgenius_connections_capacity", 2 * 20000)  # both workers past post_worker_init: accepting
    return watch


class Stream:
    """An open stream and where it is served (from its `connection.open` log line)."""

    def __init__(self, g: Gunicorn, tok: str, user: str, **headers: str) -> None:
        self.client = SSEClient(f"{g.base_url}/stream?channels={CHAN}", {**bearer(tok), **headers})
        assert self.client.status == 200, self.client.json_body(2)
        connected = self.client.next(5)
        assert connected is not None and connected.event == "system.connected"
        self.id = connected.json()["connection_id"]
        self.user = user
        self.pid = wait_until(lambda: _opened_pid(g, self.id), 5, message=f"connection.open of {self.id}")


def _opened_pid(g: Gunicorn, cid: str) -> int | None:
    return next((r["pid"] for r in g.json_logs() if r.get("event") == "connection.open" and r.get("connection_id") == cid), None)


def spread_streams(g: Gunicorn, users: list[tuple[str, str]], at_least: int = 4) -> list[Stream]:
    """Open streams, alternating users, until both workers hold some (gevent workers accept greedily)."""
    streams: list[Stream] = []
    cycle = itertools.cycle(users)
    try:
        while (len({s.pid for s in streams}) < 2 or len(streams) < at_least) and len(streams) < 60:
            user, tok = next(cycle)
            streams.append(Stream(g, tok, user))
        assert {s.pid for s in streams} == set(g.worker_pids()), f"streams should be spread over both workers: {[s.pid for s in streams]}"
    except BaseException:
        for s in streams:
            s.client.close()
        raise
    return streams


def users_per_worker(streams: list[Stream]) -> int:
    return sum(len({s.user for s in streams if s.pid == pid}) for pid in {s.pid for s in streams})


def wait_messages(client: SSEClient, ids: list[str | None]) -> None:
    """Read until each of `ids` arrived, in order (other events, e.g. user.presence, are kept but skipped)."""
    for want in ids:
        client.read_until(lambda f, want=want: f.id == want, 5)


def received(clients: list[SSEClient]) -> int:
    """Bus events the clients have read so far (system.* frames are the server's own, not deliveries)."""
    for c in clients:
        while c.pump(0.01) and c.next(0) is not None:
            pass
    return sum(1 for c in clients for f in c.frames if not f.event.startswith("system."))


def delivered_matches(watch: Watch, before: Scrape, clients: list[SSEClient]) -> None:
    """The live delivery counter grew by exactly what the clients received (presence events included)."""
    name = "chatgenius_events_delivered_total"
    seen: list[tuple[float, int]] = []

    def equal() -> bool:
        seen.append((watch()(name, source="live") - before(name, source="live"), received(clients)))
        return seen[-1][0] == seen[-1][1]

    try:
        wait_until(equal, 10, 0.1, "delivered counter == events the clients received")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; (counter, received) {seen[-3:]}") from None


def test_metrics_follow_streams_users_and_events_across_both_workers(server: Gunicorn, token, watch: Watch) -> None:
    base = server.base_url
    alice, bob = token("alice", ["publish:events"]), token("bob")
    before = watch()
    streams = spread_streams(server, [("alice", alice), ("bob", bob)])
    clients = [s.client for s in streams]
    try:
        n = len(streams)
        watch.settle("chatgenius_connections_active", before("chatgenius_connections_active") + n)
        now = watch()
        assert now("chatgenius_users_connected") == before("chatgenius_users_connected") + users_per_worker(streams)
        assert now("chatgenius_connections_opened_total") == before("chatgenius_connections_opened_total") + n

        events = 4
        ids = [publish(base, alice, CHAN, {"n": i}) for i in range(events)]
        for c in clients:
            wait_messages(c, ids)
        delivered_matches(watch, before, clients)
        now = watch()
        published = "chatgenius_events_published_total"
        assert now(published, type="message.created") == before(published, type="message.created") + events
        writes = now("chatgenius_broadcast_latency_seconds_count") - before("chatgenius_broadcast_latency_seconds_count")
        # Each worker times what it delivered (one observation per write, or per event it wrote to idle
        # streams itself); a write may carry several events, so no more than the clients received.
        assert len({s.pid for s in streams}) <= writes <= received(clients)
        assert now("chatgenius_broadcast_latency_seconds_sum") > before("chatgenius_broadcast_latency_seconds_sum")

        memory = now.by("chatgenius_process_resident_memory_bytes", "pid")
        assert {int(p) for p in memory} == set(server.worker_pids()) and min(memory.values()) > 10e6
        assert "chatgenius_bus_reader_lag_seconds" in now.names()
        assert now("chatgenius_connections_capacity") == 2 * 20000
        watch.settle("chatgenius_bus_reader_up", 1)  # sampled every second; 0 until both readers connected

        # A client coming back with its cursor: a reconnection, and what it missed is replayed.
        resumed = SSEClient(f"{base}/stream?channels={CHAN}", {**bearer(alice), "Last-Event-ID": ids[0]})
        clients.append(resumed)
        resumed_id = resumed.next(5).json()["connection_id"]
        wait_messages(resumed, ids[1:])
        watch.settle("chatgenius_reconnections_total", before("chatgenius_reconnections_total") + 1)
        replayed = wait_until(lambda: next((r["replayed"] for r in server.json_logs()
                                            if r.get("event") == "connection.open" and r.get("connection_id") == resumed_id), None),
                              5, message="connection.open of the resumed stream")
        now = watch()
        assert replayed >= events - 1
        assert now("chatgenius_replay_events_count") == before("chatgenius_replay_events_count") + 1
        assert now("chatgenius_replay_events_sum") == before("chatgenius_replay_events_sum") + replayed
        delivered = "chatgenius_events_delivered_total"
        assert now(delivered, source="replay") == before(delivered, source="replay") + replayed
    finally:
        for c in clients:
            c.close()
    # Idle streams whose client closed are found at once by the read watcher (chatgenius/hangup.py),
    # not by a heartbeat write: heartbeat failures count only peers that vanished without a FIN.
    watch.settle("chatgenius_connections_active", before("chatgenius_connections_active"))
    watch.settle("chatgenius_users_connected", before("chatgenius_users_connected"))
    now = watch()
    closed = len(clients)
    assert now("chatgenius_connections_closed_total", reason="client_closed") == before(
        "chatgenius_connections_closed_total", reason="client_closed") + closed
    assert now("chatgenius_heartbeat_write_failures_total") == before("chatgenius_heartbeat_write_failures_total")
    assert now("chatgenius_connection_duration_seconds_count") == before("chatgenius_connection_duration_seconds_count") + closed
    rules = {s.labels.get("url_rule") for s in now.samples if s.name == "flask_http_request_duration_seconds_count"}
    # (/events is there only for publishes a worker answered through Flask: its first with a token,
    # web/publish_fast.py; which worker saw which first varies, so it is not asserted here.)
    assert "/stream" not in rules and "/healthz" in rules


def test_refusals_are_counted_by_reason(server: Gunicorn, token, watch: Watch) -> None:
    base = server.base_url
    outsider = token("carol", channels=["workspace:*"])
    before = watch()
    assert request("GET", f"{base}/stream?channels={CHAN}", headers={"Authorization": "Bearer not-a-jwt"}).status == 401
    assert request("GET", f"{base}/stream?channels={CHAN}").status == 401
    assert request("GET", f"{base}/stream?channels={CHAN}", headers=bearer(outsider)).status == 403
    assert request("GET", f"{base}/stream?channels=Not-A-Channel", headers=bearer(outsider)).status == 400
    assert request("GET", f"{base}/admin/stats", headers=bearer(outsider)).status == 403
    assert request("GET", f"{base}/metrics", headers=bearer(outsider)).status == 403
    assert request("GET", f"{base}/metrics").status == 401
    watch.settle("chatgenius_rejections_total", before("chatgenius_rejections_total", reason="forbidden") + 3, reason="forbidden")
    now = watch()
    for name, label, value, delta in [
        ("chatgenius_rejections_total", "reason", "unauthorized", 3),
        ("chatgenius_rejections_total", "reason", "bad_input", 1),
        ("chatgenius_auth_failures_total", "reason", "malformed", 1),
        ("chatgenius_auth_failures_total", "reason", "missing", 2),
    ]:
        assert now(name, **{label: value}) == before(name, **{label: value}) + delta, (name, value)
    assert now("chatgenius_errors_total") == before("chatgenius_errors_total")


def test_admin_stats_give_the_metrics_numbers_as_json(server: Gunicorn, token, watch: Watch) -> None:
    base = server.base_url
    admin = token("root", ["admin:sse", "publish:events"])
    stream = Stream(server, admin, "root")
    try:
        watch.settle("chatgenius_connections_active", 1)
        status, headers, stats = get_json(f"{base}/admin/stats", bearer(admin))
        assert status == 200 and headers["Cache-Control"] == "no-store"
        now = watch()
        assert stats["connections"] == 1 == now("chatgenius_connections_active")
        assert stats["workers"] == 2 and {int(p) for p in stats["memory_bytes"]} == set(server.worker_pids())
        assert stats["events_published"] == now("chatgenius_events_published_total")
        assert stats["rejections"] == now.by("chatgenius_rejections_total", "reason")
        assert stats["bus"]["reader_up"] == 1 and stats["capacity"] == 40000
    finally:
        stream.client.close()
    status, _, body = get_json(f"{base}/admin/stats", bearer(token("dave")))
    assert status == 403 and body["error"] == "forbidden"


def test_logs_tell_each_connection_story_without_credentials(server: Gunicorn, token, minted: list[str]) -> None:
    base = server.base_url
    alice = token("alice", ["publish:events"])
    rid = f"it-{uuid.uuid4().hex[:12]}"
    first = Stream(server, alice, "alice", **{"X-Request-ID": rid})
    assert first.client.headers["X-Request-ID"] == rid
    ids = [publish(base, alice, CHAN, {"n": i}) for i in range(2)]
    wait_messages(first.client, ids)
    again = SSEClient(f"{base}/stream?channels={CHAN}", {**bearer(alice), "Last-Event-ID": ids[0]})
    again_id = again.next(5).json()["connection_id"]
    wait_messages(again, ids[1:])
    tampered = alice[:-6] + ("AAAAAA" if not alice.endswith("AAAAAA") else "BBBBBB")
    assert request("GET", f"{base}/stream?channels={CHAN}", headers=bearer(tampered)).status == 401
    assert request("GET", f"{base}/stream?channels={CHAN}&ticket=tkt-never-issued-0451").status == 401
    first.client.close()
    again.close()

    def story() -> list[dict] | None:
        logs = server.json_logs()
        closed = {r.get("connection_id") for r in logs if r.get("event") == "connection.close"}
        summary = any(r.get("event") == "broadcast" and r["by_type"].get("message.created") for r in logs)
        return logs if {first.id, again_id} <= closed and summary else None

    logs = wait_until(story, 10, 0.1, "both streams closed and a broadcast summary")

    def one(event: str, **fields: object) -> dict:
        found = [r for r in logs if r.get("event") == event and all(r.get(k) == v for k, v in fields.items())]
        assert found, f"no {event} line with {fields}"
        return found[0]

    for line in logs:
        assert {"ts", "level", "event", "pid"} <= set(line)
    opened = one("connection.open", connection_id=first.id)
    assert opened["user_id"] == "alice" and opened["resumed"] is False and opened["replayed"] == 0 and opened["request_id"] == rid
    assert one("connection.open", connection_id=again_id)["resumed"] is True
    assert one("connection.open", connection_id=again_id)["replayed"] >= 1
    closed = one("connection.close", connection_id=first.id)
    assert closed["reason"] == "client_closed" and closed["events_sent"] >= 2
    assert isinstance(closed["duration"], float) and closed["duration"] > 0, closed
    assert closed["request_id"] == rid and closed["user_id"] == "alice"
    assert one("auth.ok", user_id="alice")["level"] == "debug"
    assert one("auth.fail", reason="bad_signature")["level"] == "warning"
    assert one("auth.fail", reason="bad_ticket")["level"] == "warning"
    reject = one("connection.reject", status=401)
    assert reject["reason"] == "unauthorized" and reject["request_id"]
    summary = next(r for r in logs if r.get("event") == "broadcast" and r["by_type"].get("message.created"))
    assert summary["level"] == "info" and summary["published"] >= summary["by_type"]["message.created"] >= 1
    assert summary["interval"] > 0 and {"dispatched", "delivered", "max_lag", "streams"} <= set(summary)
    assert not [r for r in logs if r.get("event") == "publish" and r.get("level") != "debug"]

    raw = "\n".join(server.log_lines())
    assert all(line.startswith("{") for line in server.log_lines() if line.strip()), "every line is JSON"
    for secret in [*minted, tampered, "tkt-never-issued-0451"]:
        assert secret not in raw and secret.rsplit(".", 1)[-1] not in raw


def test_dashboard_and_alerts_use_only_metrics_we_export(watch: Watch) -> None:
    exported = watch().names()
    dashboard = json.loads((REPO_ROOT / "deploy/grafana-dashboard.json").read_text())
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert len(panels) >= 8
    for panel in panels:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            names = set(re.findall(r"\b((?:chatgenius|flask)_[a-z0-9_]+)\b", target["expr"]))
            assert names, (panel["title"], target["expr"])
            assert names <= exported, (panel["title"], names - exported)
    rules = (REPO_ROOT / "deploy/prometheus-rules.yml").read_text()
    used = set(re.findall(r"\b((?:chatgenius|flask)_[a-z0-9_]+)\b", rules))
    assert len(used) >= 8 and used <= exported, used - exported


def test_a_killed_worker_leaves_no_live_gauges_behind(redis_server_module: RedisServer, tmp_path: Path) -> None:
    with Gunicorn(workers=2, env=service_env(redis_server_module.url, **ENV), workdir=tmp_path / "g") as g:
        base = g.base_url
        watch = Watch(base, dev_token(base, "prometheus", [], ["admin:sse"]))
        watch.settle("chatgenius_connections_capacity", 2 * 20000)  # both workers accepting
        alice = dev_token(base, "alice", ["channel:*"], ["publish:events"])
        bob = dev_token(base, "bob", ["channel:*"])
        before = watch()
        streams = spread_streams(g, [("alice", alice), ("bob", bob)])
        try:
            watch.settle("chatgenius_connections_active", len(streams))
            ids = [publish(base, alice, CHAN, {"n": 1})]
            for s in streams:
                wait_messages(s.client, ids)
            delivered_matches(watch, before, [s.client for s in streams])
            published = watch()("chatgenius_events_published_total")
            delivered = watch()("chatgenius_events_delivered_total", source="live")
            victim = max({s.pid for s in streams}, key=lambda pid: sum(s.pid == pid for s in streams))
            lost = [s for s in streams if s.pid == victim]
            kept = [s for s in streams if s.pid != victim]
            g.kill_worker(victim)
            for s in lost:
                assert s.client.wait_closed(5), "the killed worker's streams end"
            wait_until(lambda: len(g.worker_pids()) == 2 and victim not in g.worker_pids(), 15, 0.1, "a replacement worker")
            watch.settle("chatgenius_connections_active", len(kept))
            watch.settle("chatgenius_users_connected", users_per_worker(kept))
            wait_until(lambda: {int(p) for p in watch().by("chatgenius_process_resident_memory_bytes", "pid")} == set(g.worker_pids()),
                       10, 0.1, "memory gauges of live workers only")
            now = watch()
            assert now("chatgenius_events_published_total") == published  # counters keep the dead worker's counts
            assert now("chatgenius_events_delivered_total", source="live") == delivered
            watch.settle("chatgenius_connections_capacity", 2 * 20000)  # the replacement's, set after its app loaded
        finally:
            for s in streams:
                s.client.close()
        watch.settle("chatgenius_connections_active", 0)
