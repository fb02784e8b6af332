"""GET /stream: the SSE endpoint."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator

from flask import Blueprint, Response, request

from ..stream import serve
from ..wire import wire_for
from .common import identity, realtime

bp = Blueprint("stream", __name__)

SSE_HEADERS = {
    "Cache-Control": "no-cache, no-transform",
    "X-Accel-Buffering": "no",
}


@bp.get("/stream")
def stream() -> Response:
    rt = realtime()
    if not rt.flags.enable_sse:
        raise rt.sse_disabled()
    who = identity()
    channels = rt.authorize(who, request.args.get("channels"))
    last_id = request.headers.get("Last-Event-ID")
    if last_id is None:
        last_id = request.args.get("last_event_id")
    session, connected = rt.open_stream(who, channels, last_id)
    sock = request.environ.get("gunicorn.socket")
    if sock is not None:
        # A client that stops reading must not pin this greenlet in sendall forever, and a
        # peer that vanished without FIN (unacked heartbeats) must fail within a few beats,
        # not after the kernel's ~15 minutes of retransmissions.
        beat = rt.settings.heartbeat_interval
        sock.settimeout(max(10.0, 2 * beat))
        with contextlib.suppress(OSError, AttributeError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, int((2 * beat + 5) * 1000))
    environ = request.environ
    session.wire = lambda: wire_for(environ)
    started = False

    def body() -> Iterator[bytes]:
        nonlocal started
        started = True
        yield from serve(session, connected)

    def never_served() -> None:
        # A body that was never iterated (HEAD, or an error between here and the server)
        # never reaches serve()'s cleanup: without this its subscriber and lease would leak.
        if not started:
            session.bus.detach(session.sub)
            if session.on_close is not None:
                session.on_close(session)

    resp = Response(body(), content_type="text/event-stream; charset=utf-8", headers=SSE_HEADERS)
    resp.call_on_close(never_served)
    return resp
