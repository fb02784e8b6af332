"""One connection's sink: what the hub hands a stream's (or a long-poll's) frames to.

Each `Subscriber` is the one thing the hub calls: try to send these bytes now
(`offer`: SENT, QUEUED or CLOSED) and end with a final frame (`end`). Once a
stream's head is out it has a `Transport` (wire.py, one per server kind):
while its queue is empty and its loop is not writing, the hub's bytes go to
the socket at once (one non-blocking send, no greenlet switch); otherwise, or
when the socket is full, they wait in the queue for the stream's own loop
(stream.serve), which writes the backlog in one go. The queue is bounded in
bytes; a full queue does not grow, it ends the stream with `system.reconnect`
(the client resumes from history), so a stuck client costs at most
`max_bytes` of memory.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Protocol

import gevent
from gevent.hub import Waiter, get_hub

from .shard_cursor import Vector, stamp
from .wire import CLOSED, QUEUED, SENT, THROUGH_SERVER, Transport

if TYPE_CHECKING:
    from .fanout import Hub

Frame = tuple[int, bytes]  # (seq, wire bytes); seq 0 = no cursor (ephemeral)
ALWAYS_ABOVE = 1 << 62  # a floor above every seq: a cluster stream's (Subscriber.set_position)


class Waker(Protocol):
    """What a stream's loop waits on: a Wake, or a detached stream's flag that starts a writer instead (detached.py)."""

    def set(self) -> None:
        """Wake the stream's loop (or start its writer)."""

    def clear(self) -> None:
        """Forget a wake-up already taken."""

    def wait(self, timeout: float | None = None) -> object:
        """Wait for a wake-up, at most `timeout` s."""


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
        """Wake the stream's loop (from the reader or the ticker) without a greenlet switch here."""
        self._set = True
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            get_hub().loop.run_callback(waiter.switch, None)

    def clear(self) -> None:
        """The loop took its work; the next set() wakes it again."""
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

    # The fields a delivery reads come first, so they share a cache line or two: at 10 ev/s to
    # 1,000 streams each object is cold again by the next event (docs/PERFORMANCE.md).
    __slots__ = (
        "end_reason", "floor", "_frames", "out", "_sent", "last_write", "_bytes", "max_bytes",
        "id", "user_id", "channels", "opened", "resumed", "worker",
        "_wake", "end_frame", "due", "position", "lanes", "hub",
    )

    def __init__(self, id: str, user_id: str, channels: Iterable[str], max_bytes: int) -> None:
        self.id = id
        self.user_id = user_id
        self.channels: set[str] = set(channels)
        self.max_bytes = max_bytes
        self.opened = time.time()
        self.resumed = False
        self._sent = 0
        self.worker = 0
        self._frames: list[Frame] = []
        self._bytes = 0
        self._wake: Waker = Wake()
        self.end_reason: str | None = None
        self.end_frame: bytes | None = None
        # Monotonic time by which the loop wants to run even without frames (heartbeat,
        # deadline); the hub's ticker wakes it then (ticker.py).
        self.due = float("inf")
        # The writer under the stream (wire.py); the server's own path until the head is out
        # and the stream connects a transport that can send around it (stream.serve).
        self.out: Transport = THROUGH_SERVER
        self.last_write = time.monotonic()
        self.floor = 0  # live frames at or below this seq were replayed (stream.open_session)
        self.position: Vector | None = None  # Redis Cluster: per-shard positions, its own id lines (set_position)
        # In the hub's lanes (fanout.Hub): channel -> the lane's tally when it joined; None: not in any.
        self.lanes: dict[str, int] | None = None
        self.hub: Hub | None = None  # set by Hub.add

    @property
    def sent(self) -> int:
        """Live events written to the stream, those its lanes sent included."""
        if self.lanes is not None:
            return self._sent + self.hub.pending(self)  # type: ignore[union-attr]
        return self._sent

    @sent.setter
    def sent(self, value: int) -> None:
        """Set the count (the stream's loop adds what it wrote); what the lanes sent stays counted."""
        self._sent = value - (self.hub.pending(self) if self.lanes is not None else 0)  # type: ignore[union-attr]

    def idle(self) -> bool:
        """Nothing queued, no write in progress, past any replay overlap, on a transport with a lane:
        the hub may send to this stream's socket as it sends to the others of its lane."""
        out = self.out
        return (
            out.lane is not None and not self._frames and self.end_reason is None and not self.floor
            and not out.busy and not out.rest and not out.closed  # type: ignore[attr-defined]
        )

    def leave_lanes(self) -> None:
        """Leave the hub's lanes: from now until it is idle again, every frame is offered to this stream.
        Called on each change that could make a send around it wrong (frames queued, a partial send,
        the stream's own write about to start, its end)."""
        if self.lanes is not None:
            self.hub.leave(self)  # type: ignore[union-attr]

    def keep_rest(self, rest: bytes) -> None:
        """The hub's lane sent part of a chunk: out of the lanes, the rest kept as the next bytes,
        the loop woken to write it (what offer does after a partial send_nowait)."""
        self.leave_lanes()
        self.out.rest = rest
        self._wake.set()

    def settle(self) -> None:
        """Bring `sent` and `last_write` up to what the lanes sent (before a heartbeat decision)."""
        if self.lanes is not None:
            self.hub.settle(self)  # type: ignore[union-attr]

    def offer(self, seq: int, frame: bytes, now: float = 0.0) -> int:
        """Send one frame now if the stream is idle on a direct transport, else queue it.

        SENT (written now), QUEUED (the loop will write it), CLOSED (the stream
        ended; nothing taken). A durable frame at or below the replay floor is
        not taken either (QUEUED would be wrong; it was replayed): CLOSED.
        `now`: the dispatch's monotonic time, read once for all its streams (0: read here).
        Hot path: a few attribute reads and either one send or one append
        (write_now's send, inline: a call fewer per delivery).
        """
        if self.end_reason is not None:
            return CLOSED
        if self.floor and seq:
            if self.position is not None:  # Redis Cluster (floor stays set): this stream's id line
                # Not `frame := stamp(...)`: compiled (mypyc), `frame` is checked to be bytes on
                # assignment, and a frame replayed already made the reader raise TypeError.
                stamped = stamp(self.position, seq, frame)
                if stamped is None:
                    return CLOSED  # replayed already, on its shard
                frame = stamped
            elif seq <= self.floor:
                return CLOSED
            else:
                self.floor = 0  # past the replay overlap
        if not self._frames:  # end_reason is None (checked above)
            out = self.out
            done = out.send_nowait(frame)
            if done == SENT:
                self._sent += 1
                self.last_write = now or time.monotonic()
                if out.rest:
                    self._wake.set()
                return SENT
            if done == CLOSED:
                self.end("client_closed")  # the loop ends the response
                return CLOSED
        self.leave_lanes()  # queued: the hub must offer it every frame from now on
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
        `offer` holds this step inline (a call fewer per delivery): change both together.
        """
        if self._frames or self.end_reason is not None:
            return QUEUED
        out = self.out
        done = out.send_nowait(data)
        if done == SENT:
            self._sent += count
            self.last_write = time.monotonic()
            if out.rest:
                self._wake.set()
        elif done == CLOSED:
            self.end("client_closed")  # the loop ends the response
        return done

    def set_floor(self, floor: int) -> None:
        """Live frames at or below `floor` were replayed: drop those already queued, and later ones."""
        self.leave_lanes()
        self.floor = floor
        if floor and self._frames:
            self._frames = [(s, f) for s, f in self._frames if not s or s > floor]
            self._bytes = sum(len(f) for _, f in self._frames)

    def set_position(self, position: Vector) -> None:
        """Redis Cluster's set_floor: stamp queued frames with this stream's id lines (dropping those
        the replay covered); `offer` stamps later ones. The floor stays above every packed seq, so
        every durable frame takes offer's replay-overlap branch (one Redis pays nothing for this)
        and the hub never joins a run for this stream (Hub.dispatch_run)."""
        self.leave_lanes()
        queued = [(s, stamp(position, s, f)) for s, f in self._frames]
        self._frames = [(s, f) for s, f in queued if f is not None]
        self._bytes = sum(len(f) for _, f in self._frames)
        self.position = position
        self.floor = ALWAYS_ABOVE

    def end(self, reason: str, frame: bytes | None = None) -> None:
        """Ask the loop to stop after writing `frame`; the first reason wins."""
        self.leave_lanes()
        if self.end_reason is None:
            self.end_reason = reason
            self.end_frame = frame
        self._wake.set()

    def take(self, timeout: float | None) -> list[Frame]:
        """Wait up to `timeout` (None: until woken) for frames; return them all (maybe none).

        Also returns (with none) when the stream ended or its transport holds the
        rest of a partial send: the loop writes that before anything else.
        """
        try:
            if not self._frames and self.end_reason is None and not self.out.rest:
                self._wake.wait(timeout)
        finally:
            self.leave_lanes()  # the caller writes next (a heartbeat, the backlog): nothing around it
        self._wake.clear()
        frames, self._frames, self._bytes = self._frames, [], 0
        return frames

    @property
    def depth(self) -> int:
        """Frames waiting in the stream's queue (not yet written)."""
        return len(self._frames)
