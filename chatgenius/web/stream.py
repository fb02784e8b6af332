"""GET /stream: the SSE endpoint."""

from __future__ import annotations

import contextlib
import socket
from functools import partial

from flask import Blueprint, Response, request

from .. import hangup
from ..stream import StreamBody
from ..wire import transport_for
from .common import identity, realtime

bp = Blueprint("stream", __name__)

SSE_HEADERS = {
    "Cache-Control": "no-cache, no-transform",
    "X-Accel-Buffering": "no",
}


@bp.get("/stream")
def stream() -> Response:
    """GET /stream: open an SSE stream (HEAD answers its head only)."""
    rt = realtime()
    if not rt.flags.enable_sse:
        raise rt.sse_disabled_error()
    who = identity()
    channels = rt.authorize(who, request.args.get("channels"))
    if request.method == "HEAD":
        # The head a GET would get, and nothing else: no lease, no presence, no subscription.
        return Response(b"", content_type="text/event-stream; charset=utf-8", headers=SSE_HEADERS)
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
    session.transport = partial(transport_for, environ)
    session.detach = rt.settings.detach_idle_streams
    body = StreamBody(session, connected)
    # A client's close ends the stream (and frees its lease and presence) at once, not at a heartbeat.
    session.hangup = hangup.watch(hangup.client_socket(environ), session.sub.end)
    # direct_passthrough: werkzeug hands `body` to the server as it is (see StreamBody).
    resp = Response(body, content_type="text/event-stream; charset=utf-8", headers=SSE_HEADERS, direct_passthrough=True)
    # A body wrapped later (compression) goes back through werkzeug, which calls this on close.
    resp.call_on_close(body.close)
    return resp
