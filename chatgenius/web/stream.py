"""GET /stream: the SSE endpoint."""

from __future__ import annotations

from flask import Blueprint, Response, request

from ..stream import serve
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
        # A client that stops reading must not pin this greenlet in sendall forever.
        sock.settimeout(max(10.0, 2 * rt.settings.heartbeat_interval))
    resp = Response(serve(session, connected), content_type="text/event-stream; charset=utf-8", headers=SSE_HEADERS)
    return resp
