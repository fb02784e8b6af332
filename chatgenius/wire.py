"""A stream's socket, written directly once the server has sent the response head.

Why: at 1000 subscribers a delivery through the WSGI stack (wake the stream's
greenlet, switch to it, resume five iterator layers, gunicorn's `write_chunk`,
gevent's `sendall` with its `getsockopt`) costs several times the `send(2)`
itself (docs/PERFORMANCE.md). Once gunicorn has sent the status line and
headers, the rest of the body is bytes on a socket in gunicorn's chunk framing.
So the bus reader writes an event to every idle stream itself: one
non-blocking send each, of one framed copy of the bytes shared by all. A
stream whose socket is full, or whose own greenlet is writing, falls back to
its queue (fanout.Subscriber).

Only gunicorn's plain-TCP response is recognised (its `Response` is the
`__self__` of the `start_response` it passes the app); anything else (TLS, the
embedded pywsgi server, a compressed stream) keeps the WSGI path.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
from collections.abc import Callable
from typing import Any

try:  # gevent's SSLSocket is not a subclass of the stdlib's when gevent is not patched
    from gevent.ssl import SSLSocket as _GeventSSLSocket
except ImportError:  # pragma: no cover - gevent is a hard dependency
    _GeventSSLSocket = ssl.SSLSocket

# environ keys: the server's start_response (remember_start_response), and a mark set by
# any hook that rewrites a stream's bytes (compression): such a body must stay on the WSGI path.
START_RESPONSE = "chatgenius.start_response"
REWRITTEN = "chatgenius.body_rewritten"


def remember_start_response(wsgi_app: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap the app so a view can find the server's response object (Wire.of)."""

    def app(environ: dict, start_response: Callable[..., Any]) -> Any:
        environ[START_RESPONSE] = start_response
        return wsgi_app(environ, start_response)

    return app


def wire_for(environ: dict) -> Wire | None:
    """The wire under this request's response, unless its body is being rewritten."""
    if environ.get(REWRITTEN):
        return None
    return Wire.of(environ.get(START_RESPONSE))


def chunk(data: bytes) -> bytes:
    """One HTTP/1.1 chunk holding `data` (the framing gunicorn uses for each write)."""
    return b"%X\r\n%b\r\n" % (len(data), data)


class Wire:
    """The socket under one streamed response, for writes that bypass the server's iterator loop."""

    __slots__ = ("_resp", "_sock", "_send", "chunked")

    def __init__(self, resp: Any, sock: Any, raw: Any) -> None:
        self._resp = resp
        self._sock = sock
        self._send: Callable[[bytes], int] = raw.send
        self.chunked = False

    @classmethod
    def of(cls, start_response: object) -> Wire | None:
        """The wire under gunicorn's response, or None when the server is not one we can write around."""
        resp = getattr(start_response, "__self__", None)
        sock = getattr(resp, "sock", None)
        if sock is None or not all(hasattr(resp, a) for a in ("chunked", "headers_sent")):
            return None
        if isinstance(sock, (ssl.SSLSocket, _GeventSSLSocket)) or getattr(getattr(resp, "cfg", None), "is_ssl", False):
            return None
        raw = getattr(sock, "_sock", None)  # gevent's socket keeps the OS socket non-blocking here
        if raw is None or raw.gettimeout() != 0.0:
            return None
        return cls(resp, sock, raw)

    def ready(self) -> bool:
        """True once the server has sent the head: from then on, body bytes may go around it."""
        if not self._resp.headers_sent:
            return False
        self.chunked = bool(self._resp.chunked)
        return True

    def framed(self, data: bytes) -> bytes:
        return chunk(data) if self.chunked else data

    def send_nowait(self, data: bytes) -> int:
        """Send what the kernel takes now, without waiting; 0 when the socket is full."""
        try:
            return self._send(data)
        except BlockingIOError:
            return 0

    def sendall(self, data: bytes) -> None:
        """Send all of `data`, yielding to other greenlets while the socket is full (honours its timeout)."""
        self._sock.sendall(data)

    def abort(self) -> None:
        """After a failed write: shut the socket so the server's closing chunk fails at once (EPIPE)
        instead of waiting out the send timeout a second time on a stuck peer."""
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
