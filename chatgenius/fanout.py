"""In-process fan-out: which local streams hold which channel, and their queues.

Both bus backends deliver through one `Hub`: the bus turns an event into its
wire frame once, and the hub hands the same bytes to every local subscriber of
the channel. A subscriber's queue is bounded in bytes; a full queue does not
grow, it ends the stream with `system.reconnect` (the client resumes from
history), so a stuck client costs at most `max_bytes` of memory.

Each `Subscriber` is its connection's sink, the one thing the hub calls: try
to send these bytes now (`offer`: SENT, QUEUED or CLOSED) and end with a final
frame (`end`). Once a stream's head is out it has a `Transport` (wire.py, one
per server kind): while its queue is empty and its loop is not writing, the
hub's bytes go to the socket at once (one non-blocking send, no greenlet
switch); otherwise, or when the socket is full, they wait in the queue for the
stream's own loop (stream.serve), which writes the backlog in one go. The hub
knows nothing of HTTP framing: the transport frames what it sends.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable

import gevent
from gevent.hub import Waiter, get_hub

from .shard_cursor import Vector, stamp
from .wire import CLOSED, QUEUED, SENT, THROUGH_SERVER, Transport

Frame = tuple[int, bytes]  # (seq, wire bytes); seq 0 = no cursor (ephemeral)


class Wake:
    """A flag one greenlet waits on (gevent's Event, cut down to what a stream needs).

    Why not Event: an idle stream's greenlet is parked here for minutes, and
    greenlet keeps the C stack between its start and the wait on the heap;
    Event.wait's chain of Cython calls added about 1 KiB to each of thousands
    of idle streams (docs/PERFORMANCE.md). A Waiter exists only while waiting.
    """

    __slots__ = ("_waiter", "_set")

    def __init__(self) -> None:
        self._waiter: Waiter | None = None
        self._set = False

    def set(self) -> None:
        self._set = True
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            get_hub().loop.run_callback(waiter.switch, None)

    def clear(self) -> None:
        self._set = False

    def wait(self, timeout: float | None = None) -> None:
        """Return once set (at once if already), or after `timeout` s."""
        if self._set:
            return
        waiter = self._waiter = Waiter()
        try:
            if timeout is None:
                waiter.get()
            else:
                with gevent.Timeout(timeout, False):
                    waiter.get()
        finally:
            self._waiter = None


class Subscriber:
    """One stream's (or one long-poll's) sink: fed by the hub, written by its transport or its loop."""

    __slots__ = (
        "id", "user_id", "channels", "max_bytes", "opened", "resumed", "sent", "worker",
        "_frames", "_bytes", "_wake", "end_reason", "end_frame", "due",
        "out", "last_write", "floor", "position",
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
        self._wake = Wake()
        self.end_reason: str | None = None
        self.end_frame: bytes | None = None
        # Monotonic time by which the loop wants to run even without frames (heartbeat,
        # deadline); the hub's ticker wakes it then. See Hub.tick.
        self.due = float("inf")
        # The writer under the stream (wire.py); the server's own path until the head is out
        # and the stream connects a transport that can send around it (stream.serve).
        self.out: Transport = THROUGH_SERVER
        self.last_write = time.monotonic()
        self.floor = 0  # live frames at or below this seq were replayed (stream.open_session)
        self.position: Vector | None = None  # Redis Cluster: per-shard positions, its own id lines (set_position)

    def offer(self, seq: int, frame: bytes) -> int:
        """Send one frame now if the stream is idle on a direct transport, else queue it.

        SENT (written now), QUEUED (the loop will write it), CLOSED (the stream
        ended; nothing taken). A durable frame at or below the replay floor is
        not taken either (QUEUED would be wrong; it was replayed): CLOSED.
        Hot path: a few attribute reads and either one send or one append.
        """
        if self.end_reason is not None:
            return CLOSED
        if self.position is not None and (frame := stamp(self.position, seq, frame)) is None:  # type: ignore[assignment]
            return CLOSED  # replayed already, on its shard
        if self.floor and seq:
            if seq <= self.floor:
                return CLOSED
            self.floor = 0  # past the replay overlap
        done = self.write_now(frame)
        if done != QUEUED:
            return done
        self._frames.append((seq, frame))
        self._bytes += len(frame)
        if self._bytes > self.max_bytes:
            self._frames.clear()
            self._bytes = 0
            self.end("slow_consumer")
            return CLOSED
        if len(self._frames) == 1:
            self._wake.set()
        return QUEUED

    def write_now(self, data: bytes, count: int = 1) -> int:
        """Send `data` (`count` events' frames) if nothing is queued before it: SENT, QUEUED or CLOSED.

        QUEUED here means not taken: the caller queues the frames. A partial send
        counts as SENT: the transport keeps the rest and the loop is woken to write it.
        """
        if self._frames or self.end_reason is not None:
            return QUEUED
        out = self.out
        done = out.send_nowait(data)
        if done == SENT:
            self.sent += count
            self.last_write = time.monotonic()
            if out.rest:
                self._wake.set()
        elif done == CLOSED:
            self.end("client_closed")  # the loop ends the response
        return done

    def set_floor(self, floor: int) -> None:
        """Live frames at or below `floor` were replayed: drop those already queued, and later ones."""
        self.floor = floor
        if floor and self._frames:
            self._frames = [(s, f) for s, f in self._frames if not s or s > floor]
            self._bytes = sum(len(f) for _, f in self._frames)

    def set_position(self, position: Vector) -> None:
        """Redis Cluster's set_floor: stamp queued frames with this stream's id lines (dropping those
        the replay covered); later ones are stamped by `offer`."""
        queued = [(s, stamp(position, s, f)) for s, f in self._frames]
        self._frames = [(s, f) for s, f in queued if f is not None]
        self._bytes = sum(len(f) for _, f in self._frames)
        self.position = position

    def end(self, reason: str, frame: bytes | None = None) -> None:
        """Ask the loop to stop after writing `frame`; the first reason wins."""
        if self.end_reason is None:
            self.end_reason = reason
            self.end_frame = frame
        self._wake.set()

    def take(self, timeout: float | None) -> list[Frame]:
        """Wait up to `timeout` (None: until woken) for frames; return them all (maybe none).

        Also returns (with none) when the stream ended or its transport holds the
        rest of a partial send: the loop writes that before anything else.
        """
        if not self._frames and self.end_reason is None and not self.out.rest:
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
        # Called once per dispatched event with its frame, local subscriber count and how many
        # of them the hub wrote to directly (telemetry).
        self.on_dispatch: Callable[[bytes, int, int], None] | None = None
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
        written = 0
        for sub in subs:
            if sub.offer(seq, frame) == SENT:
                written += 1
        if self.on_dispatch is not None:
            self.on_dispatch(frame, len(subs), written)
        return len(subs)

    def dispatch_run(self, channel: str, frames: list[Frame]) -> int:
        """Hand consecutive events of one channel to its subscribers, joined into one write each.

        Why: when the reader finds several events already waiting (a burst, or it
        fell behind), one send of all of them per stream costs about what one
        event costs; an event at a time would cost a send per event per stream.
        Order is kept: the run is consecutive in the feed. A stream still before
        its transport or inside its replay overlap gets the frames one by one.
        """
        if len(frames) == 1:
            return self.dispatch(channel, *frames[0])
        subs = self._channels.get(channel)
        if not subs:
            return 0
        first = frames[0][0]
        joined = b"".join(f for _, f in frames)
        count = len(frames)
        written = 0
        for sub in subs:
            if not (sub.floor and first <= sub.floor) and sub.write_now(joined, count) == SENT:
                written += count
            else:  # queued one by one: the loop counts and filters frames, not runs
                for seq, frame in frames:
                    sub.offer(seq, frame)
        if self.on_dispatch is not None:
            for _, frame in frames[:-1]:
                self.on_dispatch(frame, len(subs), 0)
            self.on_dispatch(frames[-1][1], len(subs), written)
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
