"""HTTP hardening every response gets: CORS from CORS_ORIGIN, security headers, a body size cap.

- CORS (flask-cors): only the configured origins, each matched exactly (never
  as a regex or prefix); never credentials, since identity travels in the
  Authorization header or a ticket, not cookies, so `*` is safe to serve as
  `*`. Preflights are answered by Flask's automatic OPTIONS, which runs no
  view: they need no token and the rate limiter skips them (ratelimit.py).
- `X-Content-Type-Options: nosniff` and `Referrer-Policy: no-referrer` (a
  stream URL may hold a ticket) on every response; `Cache-Control: no-store`
  on JSON, so no proxy or browser cache keeps an authenticated answer.
- HTML pages (the demo, and the admin page, which keeps an admin token in
  `sessionStorage`) get a Content-Security-Policy: scripts only from this
  origin (no inline script runs, so injected markup cannot reach the token),
  no framing (`frame-ancestors 'none'`, and `X-Frame-Options: DENY` for old
  browsers). deploy/nginx.conf sends the same policy with the files it serves.
- The request body is capped at what the largest valid batch can be, so a
  huge body is a 413 before anything parses it. A chunked body has no
  Content-Length to check up front: it is read to one byte past the cap, and
  refused whole if it gets there (werkzeug alone would stop reading at the cap
  and parse what it had). The connection is closed after a 413, so the server
  does not read the rest of the body on the client's behalf.
"""

from __future__ import annotations

import io
import re

from flask import Flask, Response, current_app, request
from flask_cors import CORS
from werkzeug.exceptions import RequestEntityTooLarge

from ..config import Settings
from ..events import MAX_BATCH
from ..wire import force_close
from .errors import error_response

ALLOW_HEADERS = ["Authorization", "Content-Type", "Last-Event-ID"]
EXPOSE_HEADERS = ["Retry-After", "WWW-Authenticate"]
METHODS = ["GET", "POST", "PUT", "DELETE", "OPTIONS"]
# Inline styles stay allowed: the admin page has a <style> block and both pages set element colours.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


def max_body_bytes(settings: Settings) -> int:
    """A full batch of maximal events plus room for the envelope fields and JSON escaping."""
    return MAX_BATCH * (settings.max_event_bytes + 1024) + 65536


def install(app: Flask, settings: Settings) -> None:
    """Register CORS, the header hook and the body cap on `app`."""
    app.config["MAX_CONTENT_LENGTH"] = max_body_bytes(settings)
    if settings.cors_origins:
        wildcard = settings.cors_origins == ("*",)
        origins = "*" if wildcard else [re.compile(re.escape(o) + r"\Z", re.IGNORECASE) for o in settings.cors_origins]
        CORS(
            app,
            origins=origins,
            send_wildcard=wildcard,
            supports_credentials=False,
            allow_headers=ALLOW_HEADERS,
            expose_headers=EXPOSE_HEADERS,
            methods=METHODS,
            max_age=600,
            always_send=False,  # no Origin header, no CORS headers (and no list of our origins)
            vary_header=True,
        )
    app.before_request(cap_streamed_body)
    app.after_request(security_headers)
    app.register_error_handler(RequestEntityTooLarge, too_large)


def cap_streamed_body() -> None:
    """Read a body without Content-Length (chunked) to at most cap + 1 bytes; past the cap it is a 413."""
    environ = request.environ
    if request.content_length is not None or "wsgi.input_terminated" not in environ or request.method in ("GET", "HEAD", "OPTIONS"):
        return
    cap = current_app.config["MAX_CONTENT_LENGTH"]
    data = environ["wsgi.input"].read(cap + 1)
    if len(data) > cap:
        raise RequestEntityTooLarge()
    # From here on it is a plain body of known length: werkzeug reads it from memory.
    environ["wsgi.input"] = io.BytesIO(data)
    environ["CONTENT_LENGTH"] = str(len(data))
    environ.pop("HTTP_TRANSFER_ENCODING", None)
    request.__dict__.pop("stream", None)  # nothing read it yet; never a stream over the consumed input


def security_headers(resp: Response) -> Response:
    """nosniff and no-referrer on every answer; no-store on JSON; CSP and DENY framing on HTML."""
    resp.headers["X-Content-Type-Options"] = "nosniff"
    resp.headers.setdefault("Referrer-Policy", "no-referrer")
    if resp.mimetype == "application/json" and "Cache-Control" not in resp.headers:
        resp.headers["Cache-Control"] = "no-store"
    elif resp.mimetype == "text/html":
        resp.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
        resp.headers["X-Frame-Options"] = "DENY"
    return resp


def too_large(exc: RequestEntityTooLarge) -> Response:
    """413 for a body over the cap, closing the connection instead of reading the rest."""
    force_close(request.environ)  # gunicorn: do not read and discard the rest of a huge body for keep-alive
    return error_response(413, {"error": "too_large", "message": "the request body is larger than any valid request"})
