"""Clients for the chat tests: streams that say which worker serves them, and a client that follows drains.

Cursors and ids are opaque here (`<epoch>-<seq>` on one Redis, a vector on the cluster).
"""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gevent
from gevent.event import Event
from support.gunicorn import Gunicorn
from support.http_json import get_json, post_json, request
from support.procs import wait_until
from support.redis_cluster import RedisCluster
from support.service import bearer, dev_token, service_env
from support.sse_client import Frame, SSEClient

from chatgenius.bus.cluster_shards import Layout

ADMIN = ["admin:sse"]
PUBLISHER = ["publish:events"]


@dataclass(frozen=True)
class Store:
    """The Redis a test's hosts share: one Redis (REDIS_URL) or a Redis Cluster (REDIS_CLUSTER_NODES)."""

    env: dict[str, str]
    client: Callable[[], Any]  # a plain redis-py client, for writes behind the service's back; the caller closes it
    cluster: RedisCluster | None = None

    def channel(self, name: str) -> str:
        """`name` on one Redis; on the cluster the first `name<n>` whose shard's master is not the control
        channel's, so the flag pushes and the channel's events travel through different masters."""
        if self.cluster is None:
            return name
        layout = Layout(8)  # REDIS_CLUSTER_SHARDS' default
        control = self.cluster.master_of(layout.shards[0].slot).port
        return next(f"{name}{n}" for n in range(100) if self.cluster.master_of(layout.of(f"{name}{n}").slot).port != control)


def host(store: Store | str | None, workers: int = 2, **env: str) -> Gunicorn:
    """A gunicorn instance ("host") on `store` (or a REDIS_URL): dev auth, 1 s heartbeat, room for many streams per user."""
    settings = {
        "MAX_CONNECTIONS_PER_USER": "100", "RATE_LIMIT_CONNECT": "10000/minute", "RATE_LIMIT_PUBLISH": "100000/minute",
        "GRACEFUL_TIMEOUT": "3",  # quick teardown; the drain tests set their own
    }
    if isinstance(store, Store):
        return Gunicorn(workers=workers, env=service_env(None, **{**settings, **store.env, **env}))
    return Gunicorn(workers=workers, env=service_env(store, **{**settings, **env}))


def token(base: str, sub: str, channels: list[str] | None = None, permissions: list[str] | None = None) -> str:
    return dev_token(base, sub, channels if channels is not None else ["channel:*"], permissions or [])


@dataclass
class Stream:
    """An open SSE stream and its system.connected data."""

    client: SSEClient
    connected: dict

    @property
    def id(self) -> str:
        return self.connected["connection_id"]

    def next_of(self, event: str, timeout: float = 5.0, pred: Callable[[Frame], bool] = lambda f: True) -> Frame:
        return self.client.read_until(lambda f: f.event == event and pred(f), timeout)

    def close(self) -> None:
        self.client.close()


def open_stream(base: str, tok: str, channels: str, **headers: str) -> Stream:
    client = SSEClient(f"{base}/stream?channels={channels}", {**bearer(tok), **headers}, timeout=10)
    assert client.status == 200, client.json_body()
    first = client.next(5)
    assert first is not None and first.event == "system.connected", first
    return Stream(client, first.json())


def worker_of(server: Gunicorn, connection_id: str, timeout: float = 5.0) -> int:
    """The pid of the worker serving a stream, from its connection.open log line."""

    def find() -> int | None:
        for rec in server.json_logs():
            if rec.get("event") == "connection.open" and rec.get("connection_id") == connection_id:
                return rec["pid"]
        return None

    return wait_until(find, timeout, message=f"connection.open of {connection_id}")


def streams_on_every_worker(server: Gunicorn, tok: str, channels: str, limit: int = 60) -> list[Stream]:
    """Open streams until every worker of `server` serves at least one (gevent workers accept greedily)."""
    streams: list[Stream] = []
    pids: set[int] = set()
    while pids != set(server.worker_pids()) and len(streams) < limit:
        stream = open_stream(server.base_url, tok, channels)
        streams.append(stream)
        pids.add(worker_of(server, stream.id))
    assert pids == set(server.worker_pids()), "streams should be spread over every worker"
    return streams


def presence_of(stream: Stream, user: str, timeout: float = 5.0) -> Frame:
    return stream.next_of("user.presence", timeout, lambda f: f.json()["data"]["user_id"] == user)


def no_presence_of(stream: Stream, user: str, within: float) -> None:
    """Nothing about `user` arrives for `within` s (other frames are skipped)."""
    deadline = time.monotonic() + within
    while (left := deadline - time.monotonic()) > 0:
        frame = stream.client.next(left)
        if frame is not None and frame.event == "user.presence":
            assert frame.json()["data"]["user_id"] != user, f"unexpected presence: {frame.data}"


def head(base: str, tok: str, channel: str) -> str:
    status, _, body = get_json(f"{base}/poll?channels={channel}", bearer(tok))
    assert status == 200, body
    return body["cursor"]


def history_after(base: str, tok: str, channel: str, cursor: str) -> list[str]:
    """Every durable id stored on `channel` after `cursor` (the ground truth of what was published)."""
    status, _, body = get_json(f"{base}/poll?channels={channel}&cursor={cursor}&timeout=0", bearer(tok))
    assert status == 200 and not body["reset"], body
    return [e["id"] for e in body["events"]]


def put_flags(base: str, tok: str, flags: dict) -> dict:
    resp = request("PUT", f"{base}/admin/flags", json.dumps(flags).encode(), {**bearer(tok), "Content-Type": "application/json"})
    assert resp.status == 200, resp.text
    return resp.json()


class Publisher:
    """Publishes `rate` events a second to `channel` through `base()` until stopped; retries refused posts."""

    def __init__(self, base: Callable[[], str], tok: str, channel: str, rate: float = 50.0) -> None:
        self.base, self.tok, self.channel, self.rate = base, tok, channel, rate
        self.ids: list[str] = []
        self.failures = 0
        self._stop = Event()
        self._greenlet: gevent.Greenlet | None = None

    def start(self) -> Publisher:
        self._greenlet = gevent.spawn(self._run)
        return self

    def stop(self) -> list[str]:
        """Stop (idempotent) and return the ids published."""
        self._stop.set()
        if self._greenlet is not None:
            self._greenlet.get(timeout=15)
        return self.ids

    def _run(self) -> None:
        n = 0
        next_at = time.monotonic()
        while not self._stop.is_set():
            body = {"channel": self.channel, "type": "message.created", "data": {"n": n}}
            try:
                status, _, answer = post_json(f"{self.base()}/events", body, bearer(self.tok), timeout=5)
            except (OSError, http.client.HTTPException):
                status, answer = 0, None
            if status == 201:
                self.ids.append(answer["ids"][0])
                n += 1
                next_at += 1 / self.rate
                self._stop.wait(max(0.0, next_at - time.monotonic()))
            else:
                self.failures += 1
                self._stop.wait(0.05)
                next_at = time.monotonic()


@dataclass
class Follower:
    """Does what the bundled client does: on system.reconnect wait `retry_ms` and resume with
    Last-Event-ID (the last frame's id: its cursor); on a refusal (503 draining) or a refused
    connection, retry shortly. `ids` are the events' own ids, as history lists them."""

    base: Callable[[], str]
    tok: str
    channel: str
    cursor: str
    ids: list[str] = field(default_factory=list)
    reconnect_at: list[float] = field(default_factory=list)
    unexpected_ends: int = 0
    refusals: int = 0
    done: Event = field(default_factory=Event)
    greenlet: gevent.Greenlet | None = None

    def start(self) -> Follower:
        self.greenlet = gevent.spawn(self._run)
        return self

    def finish(self, last_id: str, timeout: float = 15.0) -> None:
        """Stop once `last_id` has been received (or after `timeout`)."""
        wait_until(lambda: last_id in self.ids, timeout, 0.05, f"follower got {last_id} (has {len(self.ids)} ids)")
        self.done.set()
        assert self.greenlet is not None
        self.greenlet.get(timeout=5)

    def _run(self) -> None:
        while not self.done.is_set():
            try:
                headers = {**bearer(self.tok), "Last-Event-ID": self.cursor}
                client = SSEClient(f"{self.base()}/stream?channels={self.channel}", headers, timeout=5)
            except OSError:
                self.refusals += 1
                gevent.sleep(0.1)
                continue
            if client.status != 200:
                self.refusals += 1
                client.close()
                gevent.sleep(0.2)
                continue
            try:
                self._read(client)
            finally:
                client.close()

    def _read(self, client: SSEClient) -> None:
        while not self.done.is_set():
            frame = client.next(0.2)
            if frame is None:
                if client.closed:
                    self.unexpected_ends += 1
                    return
                continue
            if frame.event == "system.reconnect":
                self.reconnect_at.append(time.monotonic())
                gevent.sleep(frame.json()["retry_ms"] / 1000)
                return
            if frame.id is not None:
                self.ids.append(frame.json()["id"])
                self.cursor = frame.id
