"""One SSE connection's loop: replay, then live, with heartbeat and deadline.

Opening is split from serving so every refusal (bad cursor, bus down) happens
before the 200 is sent and can still be a JSON error. The loop owns the
connection (Mercure's shape): it waits on its subscriber's queue (woken by the
hub's ticker for heartbeats and deadlines), coalesces whatever queued into one
write, and ends with a frame that tells the client what to do next. It writes
through its transport (wire.py), which either writes itself or hands the bytes
back to be yielded to the server. Plain values only: no Flask here.
"""

from __future__ import annotations

import inspect
import json
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from . import log
from .bus.base import EventBus, Replay
from .cursor import Cursor
from .hangup import unwatch
from .shard_cursor import Stamped, Vector, stamp_replay
from .sse import comment, encode, retry
from .subscriber import Frame, Subscriber
from .wire import THROUGH_SERVER, GunicornSocket, Transport

HEARTBEAT = comment("hb")


def control_frame(event: str, data: dict) -> bytes:
    """A server-to-one-connection frame (system.*): no id, never stored."""
    return encode(json.dumps(data, separators=(",", ":")), event)


def jittered(ms: int, spread: float = 0.5) -> int:
    """`ms` ± spread, so a crowd of clients does not come back in one instant."""
    return max(0, int(ms * (1 - spread + 2 * spread * random.random())))


@dataclass(slots=True)
class StreamStats:
    """What the loop did; read by the close hook for logs and metrics."""

    replayed: int = 0
    reset: list[str] = field(default_factory=list)
    end_reason: str = "client_closed"
    # True while a heartbeat is being written: a stream that ends then was found dead by it.
    heartbeat_pending: bool = False


@dataclass(slots=True)  # thousands per worker: no __dict__ each
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
    on_write: Callable[[list[bytes]], None] | None = None  # after each write of live frames (metrics)
    # Called once the head has gone out: the transport to write through (wire.transport_for).
    transport: Callable[[], Transport] | None = None
    request_id: str | None = None  # bound to the log lines the stream writes after its view returned
    on_error: Callable[[BaseException], None] | None = None  # a failure inside the loop (a bug): count, log
    hangup: Any = None  # the watcher that ends the stream when its client closes (hangup.py)
    detach: bool = False  # DETACH_IDLE_STREAMS: on a gunicorn socket, no greenlet while idle (detached.py)


def open_session(
    bus: EventBus,
    sub: Subscriber,
    after: Cursor | None,
    replay_limit: int,
    heartbeat: float,
    retry_ms: int,
    deadline: float | None,
    on_write: Callable[[list[bytes]], None] | None = None,
) -> StreamSession:
    """Attach first (live frames buffer in the queue), then read history: race-free resume."""
    channels = sorted(sub.channels)
    bus.attach(sub, channels)
    try:
        found = bus.replay(channels, after, replay_limit)
    except BaseException:
        bus.detach(sub)
        raise
    if isinstance(found.head, Vector):  # Redis Cluster: per-shard positions, each frame its stream's id
        bodies = [(r.seq, r.frame.split(b"\n", 1)[1]) for r in found.events]  # without the event's own id line
        frames, position = stamp_replay(found.start, found.head, bodies)
        found.events = [Stamped(f) for f in frames]  # type: ignore[misc]
        sub.set_position(position)
        return StreamSession(bus, sub, found, 0, heartbeat, retry_ms, deadline, on_write=on_write)
    # History was read up to the head of one consistent snapshot: any live frame at or
    # below it was either replayed or is older than the cursor. Drop those, keep the rest.
    floor = found.head.seq if after is not None and found.head is not None else 0
    sub.set_floor(floor)  # drops those already queued; the hub drops later ones
    return StreamSession(bus, sub, found, floor, heartbeat, retry_ms, deadline, on_write=on_write)


def serve(session: StreamSession, connected: dict) -> Iterator[bytes]:
    """The response body: first frames, replay, live frames, heartbeats, one closing frame.

    The first chunk goes through the server, which sends the head with it.
    Then the stream connects its transport (wire.py): from there on the hub
    may send to an idle socket itself, and each write of the loop either goes
    to the socket or comes back to be yielded to the server.
    """
    sub = session.sub
    stats = session.stats
    detached = False
    log.request_id.set(session.request_id)
    try:
        yield _first_write(session, connected)
        del connected
        session.replay = _SENT  # the replayed frames are on the wire: do not hold them for the stream's life
        out = session.transport() if session.transport is not None else THROUGH_SERVER
        sub.last_write = time.monotonic()
        if session.detach and isinstance(out, GunicornSocket):
            from .detached import detach  # built on this module's loop steps: imported where used

            detached = True
            detach(session, out)
            return  # gunicorn closes its copy of the socket and this greenlet ends
        sub.out = out
        if out.direct:
            # The server keeps the last item it wrote until the next one: let that be
            # nothing rather than the first write (which holds the replay).
            yield b""
        while True:
            arm(session)
            step = next_write(session, sub.take(None))  # waits here (not in a helper: a frame less parked)
            if step is None:
                continue
            kept, data, last = step
            yield from out.write(data)
            if out.closed:
                return
            wrote(session, kept)
            if last:
                return
    except Exception as exc:
        if session.on_error is not None:
            log.request_id.set(session.request_id)
            session.on_error(exc)
        raise
    finally:
        if not detached:  # else the connection, and the session's release, belong to detached.py
            sub.leave_lanes()
            sub.out = THROUGH_SERVER  # the socket goes back to the server: the hub must not touch it
            if sub.end_reason is not None and stats.end_reason == "client_closed":
                stats.end_reason = sub.end_reason  # ended while blocked in a write (slow consumer)
            log.request_id.set(session.request_id)
            release(session)
            log.request_id.set(None)


def arm(session: StreamSession) -> None:
    """Tell the hub's ticker when to wake the loop without frames: heartbeat or deadline (Hub.start_ticker)."""
    sub = session.sub
    now = time.monotonic()
    timeout = session.heartbeat - (now - sub.last_write)
    if session.deadline is not None:
        timeout = min(timeout, session.deadline - time.time())
    sub.due = now + max(0.0, timeout)


def next_write(session: StreamSession, frames: list[Frame]) -> tuple[list[bytes], bytes, bool] | None:
    """What to write after a wake-up with `frames`: (live frames, the bytes to write, last write?),
    or None when there is nothing to do yet.

    The bytes are the frames joined, then the closing frame when the stream
    ends, or a heartbeat when it was quiet for a heartbeat interval. May be
    empty when only the rest of a partial send is due (the transport's).
    """
    sub = session.sub
    stats = session.stats
    kept = [f for _, f in frames]
    if sub.end_reason is not None:
        stats.end_reason = sub.end_reason
        return kept, b"".join(kept) + (sub.end_frame or b""), True
    if session.deadline is not None and time.time() >= session.deadline:
        stats.end_reason = "token_expiring"
        reauth = control_frame("system.reauth", {"reason": "token_expiring"})
        return kept, b"".join(kept) + reauth, True
    if kept or sub.out.rest:
        return kept, b"".join(kept), False
    if time.monotonic() - sub.last_write >= session.heartbeat:
        stats.heartbeat_pending = True  # a stream that ends in this write was found dead by it
        return kept, HEARTBEAT, False
    return None


def wrote(session: StreamSession, kept: list[bytes]) -> None:
    """After a write went out: count live frames, and the heartbeat."""
    sub = session.sub
    sub.last_write = time.monotonic()
    if kept:
        sub.sent += len(kept)
        if session.on_write is not None:
            session.on_write(kept)
    session.stats.heartbeat_pending = False


_SENT = Replay()


def _first_write(session: StreamSession, connected: dict) -> bytes:
    """retry, system.connected, system.reset if any, and the replayed frames: one write."""
    stats = session.stats
    head = [retry(jittered(session.retry_ms, 0.25)), control_frame("system.connected", connected)]
    if session.replay.reset:
        stats.reset = list(session.replay.reset)
        head.append(control_frame("system.reset", {"channels": stats.reset}))
    head.extend(r.frame for r in session.replay.events)
    stats.replayed = len(session.replay.events)
    session.sub.sent += stats.replayed
    return b"".join(head)


def release(session: StreamSession) -> None:
    """The stream is over: stop watching for a hang-up, leave the bus, tell the owner (on_close)."""
    # First: the socket goes back to the server, which may close it and reuse its descriptor.
    unwatch(session.hangup)
    session.hangup = None
    session.bus.detach(session.sub)
    if session.on_close is not None:
        session.on_close(session)


class StreamBody:
    """The /stream response body, handed to the server as it is (werkzeug's direct passthrough).

    The server calls iter() once and then resumes serve()'s generator itself,
    with no iterator layers in between (ClosingIterator, encoders, wrappers):
    each layer is a C frame on the stack an idle stream's greenlet keeps while
    it waits, about 1 KiB each (docs/PERFORMANCE.md). close() releases the
    session even when the body was never iterated (HEAD, an error before the
    first write), and is safe to call more than once.
    """

    __slots__ = ("session", "_connected", "_gen", "_closed")

    def __init__(self, session: StreamSession, connected: dict) -> None:
        self.session = session
        self._connected: dict | None = connected
        self._gen: Iterator[bytes] | None = None
        self._closed = False

    def __iter__(self) -> Iterator[bytes]:
        if self._gen is None:
            if self._closed or self._connected is None:
                return iter(())
            self._gen, self._connected = serve(self.session, self._connected), None
        return self._gen

    def close(self) -> None:
        """gunicorn's close of the response: ends the stream's loop, or releases a stream that never ran."""
        if self._closed:
            return
        self._closed = True
        gen, self._gen = self._gen, None
        if gen is not None and inspect.getgeneratorstate(gen) != inspect.GEN_CREATED:  # type: ignore[arg-type]
            gen.close()  # type: ignore[attr-defined]  # serve()'s finally releases the session
        else:
            self._connected = None
            release(self.session)
