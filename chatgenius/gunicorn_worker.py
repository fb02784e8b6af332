"""gunicorn's gevent worker, answering the usual POST /events without gunicorn's request machinery.

Why: in a profile of single publishes (docs/PERFORMANCE.md) gunicorn's parsing
of the request, its WSGI environ and its response object took about half of a
publish's CPU, more than validating and storing the event. A backend publishes
the same small request hundreds of times a second on a kept-alive connection.

How: the worker reads what a connection has sent (one `recv`, once the
socket is readable). While it holds the head of a usual publish (a head that
web/publish_head.parse reads, a good token, JSON of known length:
FastPublish.caller), the worker reads the rest of its body if need be and
answers it through FastPublish.answer, the same call and answer as the WSGI
fast path, in one `send`. A request that is anything else, or whose head has
not fully arrived, goes to gunicorn's own parser and handler with every byte
read of it handed back first (gunicorn's `unread`), and gunicorn and Flask
answer it as they always have; then the worker reads again. (Behind nginx,
one upstream connection carries every kind of request.) Only where gunicorn
read past that request (a client pipelining) does the rest of the connection
stay gunicorn's.

Off (every connection is gunicorn's) where this path would skip something the
configuration asks for: TLS, the PROXY protocol, HTTP/2, the uwsgi protocol, no
keep-alive, access lines or statsd, pre_request / post_request hooks, a
SCRIPT_NAME or root path, a request-line limit below the publish's, or a WSGI
layer put around the app after create_app. Set in
gunicorn.conf.py (`worker_class`); tests/integration/test_lean_publish.py fails
if the pinned gunicorn stops taking this path.
"""

from __future__ import annotations

import errno
import os
import socket
import time
from http import HTTPStatus
from typing import Any

import gevent
from gunicorn import SERVER, http, util
from gunicorn.config import PostRequest, PreRequest
from gunicorn.workers.ggevent import GeventWorker

from . import gunicorn_logging
from .readable import Readable
from .web.publish_fast import FastPublish
from .web.publish_head import REQUEST_LINE, parse
from .wire import send_whole

# The most of a connection's bytes read at once (a larger body is read on: see _take).
READ_BYTES = 65536
_QUIET = (errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN)


class PublishWorker(GeventWorker):
    """gunicorn's gevent worker; the usual POST /events is answered by `LeanPublish` first."""

    lean: LeanPublish | None = None

    def load_wsgi(self) -> None:
        """Load the app, then decide once whether this worker takes the lean path."""
        super().load_wsgi()
        self.lean = lean_path(self)

    def handle(self, listener: Any, client: socket.socket, addr: Any) -> None:
        """A connection's requests: publishes on the lean path, any other through gunicorn's own
        parser and handler, one at a time, back to the lean path after each."""
        if self.lean is None:
            super().handle(listener, client, addr)
            return
        client.setblocking(True)
        req = None
        try:
            listener_name = listener.getsockname()  # now: a stopping worker closes its listeners
            while (unread := self.lean.serve(client)) is not None:
                parser = http.get_parser(self.cfg, client, addr)
                parser.unreader.unread(unread)  # what the lean path read of this request: gunicorn's now
                with self.timeout_ctx():
                    req = next(parser)
                if not req:
                    return
                self.handle_request(listener_name, req, client, addr)  # StopIteration: close
                if req.should_close():  # handle_request returns quietly on a worker's GreenletExit too
                    return
                drained = False
                with self.timeout_ctx():  # gunicorn drains inside its wait for the next request
                    drained = parser.finish_body()
                if not drained:
                    return  # where the next request starts is unknown
                pending = parser.unreader.take_buffered()
                if pending:  # gunicorn read past this request (a pipelined one): the connection stays its
                    parser.unreader.unread(pending)
                    self._serve_rest(parser, listener_name, client, addr)
                    return
                req = None
        except (http.errors.NoMoreData, StopIteration, gevent.GreenletExit, SystemExit):
            pass  # the client left, the connection is to close, or the worker is stopping
        except OSError as exc:
            if exc.errno not in _QUIET:
                self.log.exception("Socket error processing request.")
        except BaseException as exc:  # as gunicorn's handle: a parse error gets its 400, a bug its 500
            self.handle_error(req, client, addr, exc)
        finally:
            util.close(client)

    def _serve_rest(self, parser: Any, listener_name: Any, client: socket.socket, addr: Any) -> None:
        """gunicorn's keep-alive loop over the rest of a connection (the caller handles its errors)."""
        while True:
            with self.timeout_ctx():
                req = next(parser)
            if not req:
                return
            self.handle_request(listener_name, req, client, addr)


def lean_path(worker: Any) -> LeanPublish | None:
    """The worker's lean path, or None where it would skip something the configuration asks for."""
    cfg = worker.cfg
    fast = getattr(worker.wsgi, "extensions", {}).get("chatgenius.fast_publish")
    if not isinstance(fast, FastPublish) or getattr(worker.wsgi, "wsgi_app", None) is not fast:
        return None  # no fast path, or the app was wrapped again after create_app: the wrapper must run
    if not cfg.keepalive or cfg.is_ssl or cfg.proxy_protocol not in ("off", False, None) or cfg.protocol != "http":
        return None
    if list(cfg.http_protocols) != ["h1"] or _logs_access(worker) or cfg.statsd_host:
        return None
    if cfg.pre_request is not PreRequest.pre_request or cfg.post_request is not PostRequest.post_request:
        return None
    if os.environ.get("SCRIPT_NAME") or getattr(cfg, "root_path", ""):
        return None  # gunicorn checks every path against it
    if 0 < cfg.limit_request_line < len(REQUEST_LINE):
        return None
    return LeanPublish(worker, fast)


def _logs_access(worker: Any) -> bool:
    """Whether gunicorn would write an access line per request (a lean publish would have none)."""
    if isinstance(worker.log, gunicorn_logging.Logger):
        return bool(worker.cfg.accesslog)
    return bool(getattr(worker.log, "access_log_enabled", True))


class LeanPublish:
    """One worker's lean path: reads usual publishes off a connection and answers them."""

    def __init__(self, worker: Any, fast: FastPublish) -> None:
        cfg = worker.cfg
        self.worker = worker
        self.fast = fast
        self.keepalive = cfg.keepalive
        self.max_fields = cfg.limit_request_fields or 32768
        self.max_line = cfg.limit_request_field_size or 8190
        # Two of these that disagree are gunicorn's to refuse (400): such a request is handed over.
        self.scheme_headers = frozenset(name.lower() for name in cfg.secure_scheme_headers)
        self._date = (0, "")

    def serve(self, sock: socket.socket) -> bytes | None:
        """Answer the connection's publishes. None when the connection is done; else gunicorn
        answers the next request, and the bytes returned (maybe none) are what was read of it."""
        raw = getattr(sock, "_sock", None)  # gevent's socket keeps the OS socket non-blocking
        if raw is None or raw.gettimeout() != 0.0:
            return b""  # not a socket this can read around gevent: gunicorn reads it all
        readable = Readable(raw.fileno())
        try:
            return self._serve(sock, raw, readable)
        finally:
            readable.close()

    def _serve(self, sock: socket.socket, raw: socket.socket, readable: Readable) -> bytes | None:
        fast, worker = self.fast, self.worker
        data = b""  # read off the socket, not answered yet
        while True:
            if not data:
                if not readable.wait(self.keepalive):  # gunicorn's wait for the next request
                    return None
                try:
                    data = raw.recv(READ_BYTES)
                except BlockingIOError:
                    continue
                if not data:
                    return None  # the client closed
            try:
                head = parse(data, self.max_fields, self.max_line)
                if head is None or len(self.scheme_headers.intersection(head.headers)) > 1:
                    return data
                who = fast.caller(head.headers, verify=True)
            except Exception:  # nothing is answered yet: gunicorn and Flask answer it, a bug included
                worker.log.exception("Error reading a publish; handed to gunicorn")
                return data
            if who is None:
                return data
            # Ours from here: the rest of the body is read (a client may send it after the head).
            end = head.size + head.length
            if len(data) < end:
                data += _take(sock, end - len(data))
            body, data = data[head.size : end], data[end:]
            worker.nr += 1
            if worker.nr >= worker.max_requests and worker.alive:
                worker.log.info("Autorestarting worker after current request.")
                worker.alive = False
            close = head.close or not worker.alive
            status, headers, answer = fast.answer(who, body, head.headers, path="server")
            send_whole(sock, raw, self.head(status, headers, close) + answer)
            if close:
                return None

    def head(self, status: int, headers: list[tuple[str, str]], close: bool) -> bytes:
        """The answer's head, as gunicorn writes one (status line, Server, Date, Connection)."""
        lines = [
            f"HTTP/1.1 {status} {HTTPStatus(status).phrase.upper()}\r\nServer: {SERVER}\r\nDate: {self.date()}\r\n",
            "Connection: close\r\n" if close else "Connection: keep-alive\r\n",
            *[f"{k}: {v}\r\n" for k, v in headers],
            "\r\n",
        ]
        return "".join(lines).encode("latin-1")

    def date(self) -> str:
        """The Date header's value, formatted once a second."""
        now = int(time.time())
        if now != self._date[0]:
            self._date = (now, util.http_date(now))
        return self._date[1]


def _take(sock: socket.socket, n: int) -> bytes:
    """The next `n` bytes of the connection, waiting for those not there yet."""
    parts, have = [], 0
    while have < n:
        part = sock.recv(n - have)
        if not part:
            raise ConnectionResetError(errno.ECONNRESET, "the client closed mid-request")
        parts.append(part)
        have += len(part)
    return parts[0] if len(parts) == 1 else b"".join(parts)
