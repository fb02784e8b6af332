"""POST /events without Flask's per-request machinery, for the publisher's usual request.

Why: a backend publishing chat messages sends the same verified token, a small
JSON body and nothing else, hundreds of times a second. In the profile of the
chat-shaped benchmark (docs/PERFORMANCE.md, "Where a publish goes") Flask's
request context, URL matching, flask-limiter's before-request evaluation (a
no-op here: an authenticated publish is counted inside the publish script),
prometheus-flask-exporter's per-request histogram (the service counts events
published on its own), CORS and the after-request hooks cost more than
validating and storing the event.

So this WSGI layer answers a request that is exactly that usual shape itself,
through the same service call (Realtime.publish: validation, permission, quota,
ids, errors) and with the same answer and headers as the blueprint. Anything
else goes to Flask untouched, and a request is handed over only before
anything was published:
- a token this process has not verified yet (the blueprint verifies it, logs a
  refusal with its reason, and counts bad credentials by client address);
- a body that is not plain JSON of known length within the cap, or an
  `Origin` header (CORS), or a query string;
- a gzip-accepting client while compression is on (the blueprint compresses).

The answer leaves in one write, head and body together, where the server is
gunicorn (wire.answer_whole): its own two writes cost more than the rest of
answering. (Corking the socket so that those two writes left as one segment
was tried first and measured: no difference, so it is not done.)
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any

from .. import log
from ..auth import Identity
from ..errors import ServiceError
from ..publishing import answer
from ..service import Realtime
from ..telemetry import Telemetry
from ..wire import answer_whole
from .observe import valid_request_id

PATH = "/events"
_JSON = "application/json"

# What the blueprint's hooks put on every JSON answer (web/security.py, web/observe.py).
_HEADERS = [
    ("Content-Type", _JSON),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("Cache-Control", "no-store"),
]


class FastPublish:
    """WSGI middleware: answer the usual POST /events here, pass everything else to `app`."""

    def __init__(self, app: Callable[..., Any], rt: Realtime, telemetry: Telemetry, max_body: int) -> None:
        self.app = app
        self.rt = rt
        self.telemetry = telemetry
        self.max_body = max_body

    def __call__(self, environ: dict, start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ["PATH_INFO"] != PATH or environ["REQUEST_METHOD"] != "POST":
            return self.app(environ, start_response)
        usual = self._usual(environ)
        if usual is None:
            return self.app(environ, start_response)
        who, payload = usual
        return self._publish(environ, start_response, who, payload)

    def _usual(self, environ: dict) -> tuple[Identity, object] | None:
        """The caller and the parsed body when the request has the usual shape, else None.

        Reads the body when it gets that far; a request handed back to Flask gets
        the bytes back as its input.
        """
        if environ.get("QUERY_STRING") or "HTTP_ORIGIN" in environ:
            return None
        if not environ.get("CONTENT_TYPE", "").startswith(_JSON):
            return None
        if self.rt.flags.enable_compression and "gzip" in environ.get("HTTP_ACCEPT_ENCODING", ""):
            return None
        authorization = environ.get("HTTP_AUTHORIZATION", "")
        if not authorization.startswith("Bearer "):
            return None
        who = self.rt.verifier.cached(authorization[7:].strip())
        if who is None:
            return None
        try:
            length = int(environ.get("CONTENT_LENGTH") or -1)
        except ValueError:
            return None
        if not 0 < length <= self.max_body:
            return None
        body = environ["wsgi.input"].read(length)
        environ["wsgi.input"] = io.BytesIO(body)  # for Flask, if handed back
        try:
            return who, json.loads(body)
        except (ValueError, RecursionError):
            return None

    def _publish(self, environ: dict, start_response: Callable[..., Any], who: Identity, payload: object) -> Iterable[bytes]:
        raw_rid = environ.get("HTTP_X_REQUEST_ID", "")
        rid = raw_rid if valid_request_id(raw_rid) else log.new_request_id()
        token = log.request_id.set(rid)
        try:
            body, status, extra = answer(self.rt.publish(who, payload, environ.get("HTTP_IDEMPOTENCY_KEY")))
        except ServiceError as exc:
            body, status, extra = exc.body(), exc.status, exc.headers
            self.telemetry.refused(exc.status, exc.code)
        except Exception as exc:  # a bug: the same answer and log line as the blueprint's handler
            log.event("error", logging.ERROR, error=repr(exc), exc_info=exc)
            self.telemetry.refused(500, "internal")
            body, status, extra = {"error": "internal", "message": "internal error; it has been logged"}, 500, {}
        finally:
            log.request_id.reset(token)
        data = json.dumps(body, separators=(",", ":")).encode() + b"\n"  # as flask.jsonify writes it
        headers = [*_HEADERS, ("Content-Length", str(len(data))), ("X-Request-ID", rid), *extra.items()]
        if self.rt.flags.enable_compression:
            headers.append(("Vary", "Accept-Encoding"))
        start_response(f"{status} {HTTPStatus(status).phrase.upper()}", headers)
        return answer_whole(start_response, data)
