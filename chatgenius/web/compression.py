"""ENABLE_COMPRESSION on the wire: gzip JSON answers and SSE streams for clients that accept it.

One after-request hook. When the runtime flag is off it returns at its first
line, so the default costs one attribute read per request and nothing per
frame. When it is on, a JSON (or text) body of MIN_BODY_BYTES or more is
gzipped whole, and a stream body is wrapped in compression.gzip_stream (one
sync flush per write). The flag is read when a request is answered: flipping
it changes new streams, not open ones. `Vary: Accept-Encoding` is set on every
compressible answer while the flag is on, compressed or not.
"""

from __future__ import annotations

from flask import Blueprint, Response, request

from ..compression import COMPRESSIBLE_TYPES, MIN_BODY_BYTES, accepts_gzip, gzip_body, gzip_stream
from ..wire import REWRITTEN
from .common import realtime

bp = Blueprint("compression", __name__)


@bp.after_app_request
def compress(resp: Response) -> Response:
    """Gzip a JSON answer or a stream when the client accepts it and ENABLE_COMPRESSION is on."""
    if not realtime().flags.enable_compression:
        return resp
    streamed = resp.mimetype == "text/event-stream" and resp.is_streamed
    if resp.mimetype not in COMPRESSIBLE_TYPES or "Content-Encoding" in resp.headers:
        return resp
    if resp.direct_passthrough and not streamed:
        return resp
    if resp.status_code < 200 or resp.status_code in (204, 304) or request.method == "HEAD":
        return resp
    resp.vary.add("Accept-Encoding")
    if not accepts_gzip(request.accept_encodings):
        return resp
    if resp.is_streamed:
        if resp.mimetype == "text/event-stream":
            resp.response = gzip_stream(resp.response)
            resp.direct_passthrough = False  # back through werkzeug, which closes it (web/stream.py)
            request.environ[REWRITTEN] = True  # per-stream bytes: the bus must not write around it
            resp.headers["Content-Encoding"] = "gzip"
            resp.headers.pop("Content-Length", None)
        return resp
    body = resp.get_data()
    if len(body) < MIN_BODY_BYTES:
        return resp
    resp.set_data(gzip_body(body))
    resp.headers["Content-Encoding"] = "gzip"
    return resp
