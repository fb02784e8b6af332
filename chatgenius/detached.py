"""A detached stream's writer: no greenlet while idle (DETACH_IDLE_STREAMS, docs/ARCHITECTURE.md).

Under gunicorn's gevent worker, on plain TCP and uncompressed, stream.serve
hands the connection over once head and replay are out (`detach`): the
request's greenlet ends, the hub writes events to the socket directly, and a
short-lived writer greenlet (`_flush`) is spawned only for what needs a
blocking write: a backlog once the socket filled, a heartbeat or the
deadline's system.reauth (woken by the hub's ticker), the closing frame. It
runs the same steps as serve's loop (stream.py).
"""

from __future__ import annotations

import gevent

from . import log
from .hangup import unwatch, watch
from .stream import StreamSession, arm, next_write, release, wrote
from .wire import SENT, GunicornSocket


class _Resume:
    """A detached stream's wake-up flag (in place of its Wake): setting it starts a writer greenlet.

    Why: a greenlet parked for an idle stream keeps its C stack and gunicorn's
    request objects (about 10 KiB, docs/PERFORMANCE.md). A detached stream is
    its socket, its subscriber and this session; the hub writes to it
    directly, and a greenlet exists only while there is something to write:
    a backlog, a heartbeat or a deadline (woken by the hub's ticker), the end.
    """

    __slots__ = ("session", "running")

    def __init__(self, session: StreamSession) -> None:
        self.session = session
        self.running = False

    def set(self) -> None:
        if self.running or _quiet_heartbeat(self.session):
            return
        if not self.running:  # a failed heartbeat ended the stream, whose end() started the writer
            self.running = True
            self.session.sub.leave_lanes()  # the writer's write must be the only one on the socket
            gevent.spawn(_flush, self)

    def clear(self) -> None:
        pass

    def wait(self, timeout: float | None = None) -> None:
        pass  # nobody waits: Subscriber.take returns what is queued


def detach(session: StreamSession, out: GunicornSocket) -> None:
    """After head and replay: take the connection from gunicorn and leave it to the hub and the ticker."""
    sub = session.sub
    owned = out.detach()
    session.transport = None  # holds the request's environ
    unwatch(session.hangup)  # on gunicorn's descriptor, which it is about to close
    session.hangup = watch(owned.socket, sub.end)
    sub.out = owned
    resume = _Resume(session)
    sub._wake = resume
    arm(session)  # the ticker wakes it for heartbeats and the deadline
    if sub.depth or sub.end_reason is not None:
        resume.set()


def _quiet_heartbeat(session: StreamSession) -> bool:
    """The ticker's usual wake-up of an idle stream, done here: a heartbeat in one non-blocking send,
    or only the next wake-up when nothing is due yet. False when a writer greenlet is needed: frames
    queued, or what serve's loop would write now (next_write) is not a heartbeat the socket takes
    whole (the stream ending or past its deadline, the rest of a partial send, a full socket).

    Why: a heartbeat through the writer greenlet cost a spawn and two switches per stream and
    interval, the larger part of what thousands of idle streams cost a worker between events.
    """
    sub = session.sub
    if sub.depth:
        return False
    sub.settle()  # what the hub's lanes sent counts as a write (no heartbeat due after it)
    step = next_write(session, [])
    if step is not None:
        _, data, last = step
        if last or not data or sub.out.send_nowait(data) != SENT or sub.out.rest:
            return False  # the writer writes it (again), its rest, or ends the stream
        wrote(session, [])
    arm(session)
    return True


def _flush(resume: _Resume) -> None:
    """A detached stream's writer: what serve's loop does, until there is nothing left to write."""
    session = resume.session
    sub = session.sub
    out: GunicornSocket = sub.out  # type: ignore[assignment]
    log.request_id.set(session.request_id)
    try:
        while True:
            arm(session)
            step = next_write(session, sub.take(0))
            if step is None:
                return
            kept, data, last = step
            if not last:
                out.write(data)
                if not out.closed:
                    wrote(session, kept)
                    continue
                # a failed write: the client is gone, or was too slow (ended while we wrote)
                _close_detached(session, b"", sub.end_reason or "client_closed")
                return
            _close_detached(session, data, session.stats.end_reason, kept)
            return
    except Exception as exc:
        if session.on_error is not None:
            session.on_error(exc)
        if not out.closed:
            _close_detached(session, b"", "client_closed")
    finally:
        resume.running = out.closed  # once closed (and released), never again: a late end() is a no-op
        log.request_id.set(None)


def _close_detached(session: StreamSession, final: bytes, reason: str, kept: list[bytes] | None = None) -> None:
    """Write `final` (holding the live frames `kept`) and the closing chunk, close the connection,
    release the session."""
    sub = session.sub
    unwatch(session.hangup)  # before the descriptor is closed and reused
    session.hangup = None
    session.stats.end_reason = reason
    sub.end(reason)  # the hub stops offering (the first reason stays)
    try:
        if sub.out.finish(final) and kept:  # type: ignore[attr-defined]
            wrote(session, kept)
    finally:
        release(session)
