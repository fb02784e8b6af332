"""Greenlet actors for fault tests: a client that behaves like the bundled JS client, and a publisher.

`ResilientClient` reconnects after any ending (a `system.*` frame, a dropped
connection, a refused connect) with its last cursor, exactly as the contract
asks clients to; it records every event it receives, duplicates included, so a
test can compare received sets with published ones. `Publisher` sends numbered
events at a steady rate and remembers which ones the service acknowledged.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field

import gevent

from .service import bearer
from .sse_client import SSEClient, post_json


@dataclass
class ResilientClient:
    base: str
    token: str
    channels: str
    backoff: float = 0.2  # first retry delay; doubles per failure up to `backoff_cap`, full jitter
    backoff_cap: float = 5.0
    received: list[int] = field(default_factory=list)  # data["n"] of every durable event, in arrival order
    ids: list[str] = field(default_factory=list)
    resets: int = 0
    endings: list[str] = field(default_factory=list)  # why each connection ended
    connects: int = 0
    last_id: str = ""
    stopped: bool = False
    _greenlet: gevent.Greenlet | None = None
    _client: SSEClient | None = None
    _failures: int = 0

    def start(self) -> ResilientClient:
        self._greenlet = gevent.spawn(self._run)
        return self

    def _pause(self) -> None:
        """Full-jitter exponential backoff, as the bundled JS client does (a storm spreads out)."""
        self._failures += 1
        gevent.sleep(random.uniform(0, min(self.backoff_cap, self.backoff * 2 ** (self._failures - 1))))

    def _run(self) -> None:
        while not self.stopped:
            headers = bearer(self.token)
            if self.last_id:
                headers["Last-Event-ID"] = self.last_id
            try:
                client = self._client = SSEClient(f"{self.base}/stream?channels={self.channels}", headers, timeout=5)
            except OSError as exc:
                self.endings.append(f"connect:{type(exc).__name__}")
                self._pause()
                continue
            if client.status != 200:
                self.endings.append(f"status:{client.status}")
                client.close()
                self._pause()
                continue
            self.connects += 1
            self._failures = 0
            self._read(client)
            client.close()
            self._pause()

    def _read(self, client: SSEClient) -> None:
        while not self.stopped:
            try:
                frame = client.next(1.0)
            except OSError as exc:
                self.endings.append(f"error:{type(exc).__name__}")
                return
            if frame is None:
                if client.closed:
                    self.endings.append("closed")
                    return
                continue
            if frame.event == "system.reset":
                self.resets += 1
            elif frame.event.startswith("system.") and frame.event != "system.connected":
                self.endings.append(frame.event)
            elif frame.id:
                self.last_id = frame.id
                if frame.event == "message.created":  # presence and others share the channel
                    self.ids.append(frame.id)
                    self.received.append(frame.json()["data"]["n"])

    def stop(self) -> None:
        self.stopped = True
        if self._greenlet is not None:
            self._greenlet.join(timeout=5)
            self._greenlet.kill()
        if self._client is not None:
            self._client.close()

    @property
    def connected(self) -> bool:
        return self.connects > 0


@dataclass
class Publisher:
    """POST /events at `rate` per second; `acked` maps n -> cursor for every 201."""

    base: str
    token: str
    channel: str
    rate: float = 20.0
    acked: dict[int, str] = field(default_factory=dict)
    failed: list[int] = field(default_factory=list)
    next_n: int = 0
    stopped: bool = False
    _greenlet: gevent.Greenlet | None = None

    def start(self) -> Publisher:
        self._greenlet = gevent.spawn(self._run)
        return self

    def _run(self) -> None:
        interval = 1.0 / self.rate
        while not self.stopped:
            started = time.monotonic()
            n = self.next_n
            self.next_n += 1
            try:
                status, _, body = post_json(
                    f"{self.base}/events",
                    {"channel": self.channel, "type": "message.created", "data": {"n": n}},
                    bearer(self.token),
                    timeout=5,
                )
            except OSError:
                status, body = 0, None
            if status == 201:
                self.acked[n] = body["ids"][0]
            else:
                self.failed.append(n)
            gevent.sleep(max(0.0, interval - (time.monotonic() - started)))

    def stop(self) -> None:
        self.stopped = True
        if self._greenlet is not None:
            self._greenlet.join(timeout=10)
