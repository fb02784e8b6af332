"""In-process fan-out: which local streams hold which channel, and their queues.

Both bus backends deliver through one `Hub`: the bus turns an event into its
wire frame once, and the hub hands the same bytes to every local subscriber of
the channel. A subscriber's queue is bounded in bytes; a full queue does not
grow, it ends the stream with `system.reconnect` (the client resumes from
history), so a stuck client costs at most `max_bytes` of memory.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable

import gevent
from gevent.event import Event

Frame = tuple[int, bytes]  # (seq, wire bytes); seq 0 = no cursor (ephemeral)


class Subscriber:
    """One stream's (or one long-poll's) live queue; fed by the hub, drained by its loop."""

    __slots__ = (
        "id", "user_id", "channels", "max_bytes", "opened", "resumed", "sent", "worker",
        "_frames", "_bytes", "_wake", "end_reason", "end_frame", "due",
    )

    def __init__(self, id: str, user_id: str, channels: Iterable[str], max_bytes: int) -> None:
        self.id = id
        self.user_id = user_id
        self.channels: set[str] = set(channels)
        self.max_bytes = max_bytes
        self.opened = time.time()
        self.resumed = False
        self.sent = 0
        self.worker = 0
        self._frames: list[Frame] = []
        self._bytes = 0
        self._wake = Event()
        self.end_reason: str | None = None
        self.end_frame: bytes | None = None
        # Monotonic time by which the loop wants to run even without frames (heartbeat,
        # deadline); the hub's ticker wakes it then. See Hub.tick.
        self.due = float("inf")

    def offer(self, seq: int, frame: bytes) -> None:
        """Queue one frame (hot path: no allocation beyond the tuple)."""
        if self.end_reason is not None:
            return
        self._frames.append((seq, frame))
        self._bytes += len(frame)
        if self._bytes > self.max_bytes:
            self._frames.clear()
            self._bytes = 0
            self.end("slow_consumer")
        elif len(self._frames) == 1:
            self._wake.set()

    def end(self, reason: str, frame: bytes | None = None) -> None:
        """Ask the loop to stop after writing `frame`; the first reason wins."""
        if self.end_reason is None:
            self.end_reason = reason
            self.end_frame = frame
        self._wake.set()

    def take(self, timeout: float | None) -> list[Frame]:
        """Wait up to `timeout` (None: until woken) for frames; return them all (maybe none)."""
        if not self._frames and self.end_reason is None:
            self._wake.wait(timeout)
        self._wake.clear()
        frames, self._frames, self._bytes = self._frames, [], 0
        return frames

    @property
    def depth(self) -> int:
        return len(self._frames)


class Hub:
    """Channel → local subscribers; `on_first`/`on_last` tell the bus to (un)subscribe upstream."""

    def __init__(
        self,
        on_first: Callable[[list[str]], None] | None = None,
        on_last: Callable[[list[str]], None] | None = None,
    ) -> None:
        self._channels: dict[str, set[Subscriber]] = {}
        self.subscribers: dict[str, Subscriber] = {}
        self._on_first = on_first
        self._on_last = on_last
        # Called once per dispatched event with its frame and local subscriber count (telemetry).
        self.on_dispatch: Callable[[bytes, int], None] | None = None
        self._ticker: gevent.Greenlet | None = None

    def add(self, sub: Subscriber, channels: Iterable[str]) -> None:
        """Register `sub` on `channels`; blocks while the upstream feed confirms new ones."""
        fresh = []
        for name in channels:
            subs = self._channels.get(name)
            if subs is None:
                subs = self._channels[name] = set()
                fresh.append(name)
            subs.add(sub)
            sub.channels.add(name)
        self.subscribers[sub.id] = sub
        if fresh and self._on_first is not None:
            try:
                self._on_first(fresh)
            except BaseException:
                self.remove(sub, list(sub.channels))
                raise

    def remove(self, sub: Subscriber, channels: Iterable[str] | None = None) -> None:
        """Drop `sub` from `channels` (default: all of them)."""
        names = list(sub.channels if channels is None else channels)
        gone = []
        for name in names:
            subs = self._channels.get(name)
            sub.channels.discard(name)
            if subs is None:
                continue
            subs.discard(sub)
            if not subs:
                del self._channels[name]
                gone.append(name)
        if not sub.channels or channels is None:
            self.subscribers.pop(sub.id, None)
        if gone and self._on_last is not None:
            self._on_last(gone)

    def dispatch(self, channel: str, seq: int, frame: bytes) -> int:
        """Hand one encoded frame to every local subscriber of `channel`."""
        subs = self._channels.get(channel)
        if not subs:
            return 0
        for sub in subs:
            sub.offer(seq, frame)
        if self.on_dispatch is not None:
            self.on_dispatch(frame, len(subs))
        return len(subs)

    def end_all(self, reason: str, frame: Callable[[Subscriber], bytes | None]) -> int:
        """End every local subscriber (drain, flag off, feed lost)."""
        subs = list(self.subscribers.values())
        for sub in subs:
            sub.end(reason, frame(sub))
        return len(subs)

    def start_ticker(self, interval: float) -> None:
        """Wake subscribers whose `due` time passed, every `interval` s (idempotent).

        Why: a wait with a timeout costs a gevent Timeout (a timer started and
        cancelled) per wake-up, ~8 % of a worker at 10 events/s x 1000 streams in
        the profile (docs/PERFORMANCE.md). One ticker per process replaces them
        all; heartbeats and deadlines become late by at most `interval`.
        """
        if self._ticker is None or self._ticker.dead:
            self._ticker = gevent.spawn(self._tick, interval)

    def _tick(self, interval: float) -> None:
        while True:
            gevent.sleep(interval)
            now = time.monotonic()
            try:
                for sub in list(self.subscribers.values()):
                    if sub.due <= now:
                        sub.due = float("inf")
                        sub._wake.set()
            except Exception:  # a bug here must not stop every heartbeat of the process
                logging.getLogger(__name__).exception("hub ticker failed")

    def channels(self) -> list[str]:
        return list(self._channels)

    def has(self, channel: str) -> bool:
        return channel in self._channels
