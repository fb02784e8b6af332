"""One SSE connection's loop: replay, then live, with heartbeat and deadline.

Opening is split from serving so every refusal (bad cursor, bus down) happens
before the 200 is sent and can still be a JSON error. The loop owns the
connection (Mercure's shape): it waits on its subscriber's queue with the
heartbeat as timeout, coalesces whatever queued into one write, and ends with a
frame that tells the client what to do next. Plain values only: no Flask here.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from .bus.base import EventBus, Replay
from .cursor import Cursor
from .fanout import Subscriber
from .sse import comment, encode, retry
from .wire import Wire


def control_frame(event: str, data: dict) -> bytes:
    """A server-to-one-connection frame (system.*): no id, never stored."""
    return encode(json.dumps(data, separators=(",", ":")), event)


def jittered(ms: int, spread: float = 0.5) -> int:
    """`ms` ± spread, so a crowd of clients does not come back in one instant."""
    return max(0, int(ms * (1 - spread + 2 * spread * random.random())))


@dataclass
class StreamStats:
    """What the loop did; read by the close hook for logs and metrics."""

    replayed: int = 0
    reset: list[str] = field(default_factory=list)
    end_reason: str = "client_closed"
    # True while a heartbeat is being written: a stream that ends then was found dead by it.
    heartbeat_pending: bool = False


@dataclass
class StreamSession:
    """An opened stream: attached to the bus and replayed, not yet sent."""

    bus: EventBus
    sub: Subscriber
    replay: Replay
    floor: int
    heartbeat: float
    retry_ms: int
    deadline: float | None  # wall-clock time to send system.reauth
    on_close: Callable[[StreamSession], None] | None = None
    stats: StreamStats = field(default_factory=StreamStats)
    on_heartbeat: Callable[[], None] | None = None
    on_write: Callable[[list[bytes]], None] | None = None  # after each write of live frames (metrics)
    # Called once the head has gone out: the socket to write around the server, or None (wire.py).
    wire: Callable[[], Wire | None] | None = None


def open_session(
    bus: EventBus,
    sub: Subscriber,
    after: Cursor | None,
    replay_limit: int,
    heartbeat: float,
    retry_ms: int,
    deadline: float | None,
) -> StreamSession:
    """Attach first (live frames buffer in the queue), then read history: race-free resume."""
    channels = sorted(sub.channels)
    bus.attach(sub, channels)
    try:
        found = bus.replay(channels, after, replay_limit)
    except BaseException:
        bus.detach(sub)
        raise
    # History was read up to the head of one consistent snapshot: any live frame at or
    # below it was either replayed or is older than the cursor. Drop those, keep the rest.
    floor = found.head.seq if after is not None and found.head is not None else 0
    sub.floor = floor  # the hub drops such frames from now on; serve() filters those already queued
    return StreamSession(bus, sub, found, floor, heartbeat, retry_ms, deadline)


def _write(sub: Subscriber, wire: Wire, data: bytes) -> bool:
    """Write `data` as one chunk, after any chunk the hub left half-sent; False when the peer is gone."""
    sub.writing = True  # the hub queues behind us until we are done
    try:
        wire.sendall(sub.take_head() + (wire.framed(data) if data else b""))
    except OSError:
        wire.abort()
        return False
    finally:
        sub.writing = False
    sub.last_write = time.monotonic()
    return True


def serve(session: StreamSession, connected: dict) -> Iterator[bytes]:
    """The response body: first frames, replay, live frames, heartbeats, one closing frame.

    The first chunk goes through the server, which sends the head with it. After
    that, if the server lets us (`session.wire`), every write goes to the socket
    directly, and so can the hub's (fanout.Subscriber.offer); otherwise each
    write is yielded to the server as before.
    """
    sub = session.sub
    stats = session.stats
    wire: Wire | None = None
    try:
        head = [retry(jittered(session.retry_ms, 0.25)), control_frame("system.connected", connected)]
        if session.replay.reset:
            stats.reset = list(session.replay.reset)
            head.append(control_frame("system.reset", {"channels": stats.reset}))
        head.extend(r.frame for r in session.replay.events)
        stats.replayed = len(session.replay.events)
        sub.sent += stats.replayed
        yield b"".join(head)
        if session.wire is not None:
            wire = session.wire()
            if wire is not None and wire.ready():
                sub.wire = wire  # from here on the hub may write to the socket itself
            else:
                wire = None
        floor = session.floor
        sub.last_write = time.monotonic()
        while True:
            now = time.monotonic()
            timeout = session.heartbeat - (now - sub.last_write)
            if session.deadline is not None:
                timeout = min(timeout, session.deadline - time.time())
            sub.due = now + max(0.0, timeout)  # the hub's ticker wakes us then (Hub.start_ticker)
            frames = sub.take(None)
            kept: list[bytes] = []
            if frames:
                if floor:
                    kept = [f for s, f in frames if not s or s > floor]
                    if max(s for s, _ in frames) > floor:
                        floor = 0  # past the replay overlap: no more checks needed
                else:
                    kept = [f for _, f in frames]
            if wire is not None:
                if (kept or sub._head) and not _write(sub, wire, b"".join(kept)):
                    return
            elif kept:
                yield b"".join(kept)
                sub.last_write = time.monotonic()
            if kept:
                sub.sent += len(kept)
                if session.on_write is not None:
                    session.on_write(kept)
            if sub.end_reason is not None:
                stats.end_reason = sub.end_reason
                if sub.end_frame:
                    if wire is None:
                        yield sub.end_frame
                    elif not _write(sub, wire, sub.end_frame):
                        return
                return
            if session.deadline is not None and time.time() >= session.deadline:
                stats.end_reason = "token_expiring"
                reauth = control_frame("system.reauth", {"reason": "token_expiring"})
                if wire is None:
                    yield reauth
                elif not _write(sub, wire, reauth):
                    return
                return
            if time.monotonic() - sub.last_write >= session.heartbeat:
                stats.heartbeat_pending = True
                if wire is None:
                    yield comment("hb")
                    sub.last_write = time.monotonic()
                elif not _write(sub, wire, comment("hb")):
                    return
                stats.heartbeat_pending = False
                if session.on_heartbeat is not None:
                    session.on_heartbeat()
    finally:
        sub.wire = None
        if sub.end_reason is not None and stats.end_reason == "client_closed":
            stats.end_reason = sub.end_reason  # ended while blocked in a write (slow consumer)
        session.bus.detach(sub)
        if session.on_close is not None:
            session.on_close(session)
