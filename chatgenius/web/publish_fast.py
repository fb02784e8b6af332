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
- a body without a JSON content type and a known length within the cap, or
  an `Origin` header (CORS), or a query string (a body that is not valid JSON
  gets the blueprint's own 400 here, json_payload);
- a gzip-accepting client while compression is on (the blueprint compresses).

The answer leaves in one write, head and body together, where the server is
gunicorn (wire.answer_whole): its own two writes cost more than the rest of
answering. (Corking the socket so that those two writes left as one segment
was tried first and measured: no difference, so it is not done.)
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping
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

# Tokens the lean path found bad: how long, and how many, it leaves to Flask without checking again.
REFUSED_TTL = 10.0
REFUSED_MAX = 1024
# The headers the fast path reads, by their WSGI environ keys.
_ENVIRON = {
    "content-type": "CONTENT_TYPE",
    "content-length": "CONTENT_LENGTH",
    "authorization": "HTTP_AUTHORIZATION",
    "accept-encoding": "HTTP_ACCEPT_ENCODING",
    "x-request-id": "HTTP_X_REQUEST_ID",
    "idempotency-key": "HTTP_IDEMPOTENCY_KEY",
}
# What the blueprint's hooks put on every JSON answer (web/security.py, web/observe.py).
_HEADERS = [
    ("Content-Type", _JSON),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("Cache-Control", "no-store"),
]


class FastPublish:
    """WSGI middleware: answer the usual POST /events here, pass everything else to `app`.

    The decision and the answer are plain methods over a request's headers
    (lower-case names) and body, so that a server that parses the request
    itself (gunicorn_worker.PublishWorker) answers it the same way.
    """

    def __init__(self, app: Callable[..., Any], rt: Realtime, telemetry: Telemetry, max_body: int) -> None:
        self.app = app
        self.rt = rt
        self.telemetry = telemetry
        self.max_body = max_body
        self._refused: dict[bytes, float] = {}  # sha256(token) -> until when Flask alone checks it

    def __call__(self, environ: dict, start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ["PATH_INFO"] != PATH or environ["REQUEST_METHOD"] != "POST":
            return self.app(environ, start_response)
        if environ.get("QUERY_STRING") or "HTTP_ORIGIN" in environ:
            return self.app(environ, start_response)
        headers = {name: environ[key] for name, key in _ENVIRON.items() if key in environ}
        who = self.caller(headers)
        if who is None:
            return self.app(environ, start_response)
        body = environ["wsgi.input"].read(int(headers["content-length"]))
        status, head, data = self.answer(who, body, headers)
        start_response(f"{status} {HTTPStatus(status).phrase.upper()}", head)
        return answer_whole(start_response, data)

    def caller(self, headers: Mapping[str, str], verify: bool = False) -> Identity | None:
        """Who publishes, when the head has the usual shape (the path and the
        absence of a query string and an `Origin` are the caller's to check);
        None hands the request to Flask.

        A token not verified in this process yet is Flask's, unless `verify`:
        then a good one is verified here (and cached) and a bad one is still
        Flask's, which refuses it with its reason, its log line and its counters.
        """
        if not is_json(headers.get("content-type", "")):
            return None
        if self.rt.flags.enable_compression and "gzip" in headers.get("accept-encoding", ""):
            return None
        authorization = headers.get("authorization", "")
        if not authorization.startswith("Bearer "):
            return None
        length = headers.get("content-length", "")
        if not (length.isascii() and length.isdigit()) or len(length) > 18 or not 0 < int(length) <= self.max_body:
            return None
        token = authorization[7:].strip()
        who = self.rt.verifier.cached(token)
        if who is None and verify:
            who = self._verify(token)
        return who

    def _verify(self, token: str) -> Identity | None:
        """Verify a token not in the verifier's cache; None for a bad one, which Flask then refuses.

        A token refused here is not checked here again for REFUSED_TTL seconds: each of its requests
        would otherwise be verified twice (here, then by Flask), a cheap way to double a worker's work.
        """
        digest = hashlib.sha256(token.encode()).digest()
        now = time.monotonic()
        if self._refused.get(digest, 0.0) > now:
            return None
        try:
            return self.rt.verifier.verify(token)
        except Exception:  # AuthError, or no keys to check it with: Flask says which
            if len(self._refused) >= REFUSED_MAX:
                self._refused.pop(next(iter(self._refused)))  # the oldest first
            self._refused[digest] = now + REFUSED_TTL
            return None

    def answer(
        self, who: Identity, body: bytes, headers: Mapping[str, str], path: str = "wsgi"
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        """Publish `body` and answer: the status, the headers (Content-Length included) and the body.

        A body that is not JSON gets the blueprint's 400 (json_payload); `path` names who
        parsed the request, for chatgenius_publish_requests_total.
        """
        self.telemetry.publish_request(path)
        raw_rid = headers.get("x-request-id", "")
        rid = raw_rid if valid_request_id(raw_rid) else log.new_request_id()
        token = log.request_id.set(rid)
        try:
            reply, status, extra = answer(self.rt.publish(who, json_payload(body), headers.get("idempotency-key")))
        except ServiceError as exc:
            reply, status, extra = exc.body(), exc.status, exc.headers
            self.telemetry.refused(exc.status, exc.code)
        except Exception as exc:  # a bug: the same answer and log line as the blueprint's handler
            log.event("error", logging.ERROR, error=repr(exc), exc_info=exc)
            self.telemetry.refused(500, "internal")
            reply, status, extra = {"error": "internal", "message": "internal error; it has been logged"}, 500, {}
        finally:
            log.request_id.reset(token)
        data = json.dumps(reply, separators=(",", ":")).encode() + b"\n"  # as flask.jsonify writes it
        head = [*_HEADERS, ("Content-Length", str(len(data))), ("X-Request-ID", rid), *extra.items()]
        if self.rt.flags.enable_compression:
            head.append(("Vary", "Accept-Encoding"))
        return status, head, data


def is_json(content_type: str) -> bool:
    """Whether Flask (werkzeug's `is_json`) takes a body of this type as JSON: `application/json`
    or `application/*+json`, parameters and case aside."""
    mime = content_type.split(";", 1)[0].strip().lower()
    return mime == _JSON or (mime.startswith("application/") and mime.endswith("+json"))


def json_payload(body: bytes) -> object:
    """The JSON of a publish body, or the blueprint's 400 for it (web/common.json_body's words)."""
    try:
        data = json.loads(body)
    except RecursionError:
        raise ServiceError(400, "bad_json", "the body is nested too deeply") from None
    except ValueError:
        data = None
    if data is None:  # as Flask's get_json(silent=True): a body of `null` is no JSON body either
        raise ServiceError(400, "bad_json", "the body is not valid JSON")
    return data
