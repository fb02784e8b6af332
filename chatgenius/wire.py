"""The one module that knows server internals: how a stream's bytes reach its socket.

A stream has one writer at a time, and which one depends on the server under
it. This adapter gives the stream a `Transport` once the response head is out:

- `GunicornSocket` (gunicorn's gevent worker, plain TCP, HTTP/1.x): the rest
  of the body is bytes on a socket in gunicorn's chunk framing, so the bus
  reader may send an event to an idle stream itself (one non-blocking
  `send(2)` of bytes framed once per event, no greenlet switch), and the
  stream's loop writes its backlog with `sendall`. It can also `detach` the
  connection from gunicorn, so that no greenlet waits for an idle stream
  (stream.py, DETACH_IDLE_STREAMS). Why: at 1000 subscribers a
  delivery through the WSGI stack (wake, switch, iterator layers,
  `write_chunk`, `sendall` with its `getsockopt`) cost several times the
  `send(2)` itself (docs/PERFORMANCE.md).
- `THROUGH_SERVER` (the embedded pywsgi server of `python app.py`, TLS,
  HTTP/2, a compressed stream, any server not recognised): nothing goes
  around the server; every write is yielded to it by the stream's loop.

Recognising gunicorn's response means private attributes: the `Response`
behind the `start_response` it passes the app (`__self__`) and gevent's OS
socket (`sock._sock`). That probing lives here and nowhere else; the pinned
gunicorn is checked by tests/test_wire.py, which fails if the fast path is
off under it (a gunicorn upgrade cannot silently turn it off).
"""

from __future__ import annotations

import contextlib
import os
import socket
import ssl
from collections.abc import Callable
from typing import Any, Protocol

try:  # gevent's SSLSocket is not a subclass of the stdlib's when gevent is not patched
    from gevent.ssl import SSLSocket as _GeventSSLSocket
except ImportError:  # pragma: no cover - gevent is a hard dependency
    _GeventSSLSocket = ssl.SSLSocket

try:
    from gunicorn.http.wsgi import Response as _GunicornResponse
except ImportError:  # pragma: no cover - gunicorn is a hard dependency
    _GunicornResponse = None

# environ keys: the server's start_response (remember_start_response), and a mark set by
# any hook that rewrites a stream's bytes (compression): such a body must stay on the server's path.
START_RESPONSE = "chatgenius.start_response"
REWRITTEN = "chatgenius.body_rewritten"

# What an attempt to send now did (Transport.send_nowait, fanout.Subscriber.offer).
SENT = 1  # the kernel took the bytes (or part of them: the transport keeps the rest, see `rest`)
QUEUED = 0  # not sent: the caller queues them for the stream's loop
CLOSED = -1  # the peer is gone, or the stream ended


class Transport(Protocol):
    """The writer under one stream once its head is out; one implementation per server kind."""

    direct: bool  # True: bytes may go to the socket around the server (send_nowait can send)
    # The socket's own send, for the hub's lane (fanout.Hub): bytes already in HTTP chunk
    # framing go to it as they are. None where a send around the server is not one of those.
    lane: Callable[[bytes], int] | None
    rest: bytes  # the unsent end of a partial send_nowait: the next bytes on the wire
    closed: bool  # a write failed: the peer is gone

    def send_nowait(self, data: bytes) -> int:
        """Try to send `data` (one or more whole SSE frames) now: SENT, QUEUED or CLOSED."""
        ...

    def write(self, data: bytes) -> tuple[bytes, ...]:
        """The loop's write of `data` (after `rest`): returns what the server itself must still
        write (yielded by the loop), empty when the transport wrote it. On failure: `closed`."""
        ...


class _ThroughServer:
    """Every byte through the server's own write loop: the loop yields it."""

    __slots__ = ()
    direct = False
    lane: Callable[[bytes], int] | None = None
    rest = b""
    closed = False

    def send_nowait(self, data: bytes) -> int:
        return QUEUED

    def write(self, data: bytes) -> tuple[bytes, ...]:
        return (data,) if data else ()


THROUGH_SERVER: Transport = _ThroughServer()


def remember_start_response(wsgi_app: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap the app so a view can find the server's response object (transport_for, client_socket)."""

    def app(environ: dict, start_response: Callable[..., Any]) -> Any:
        environ[START_RESPONSE] = start_response
        return wsgi_app(environ, start_response)

    return app


def transport_for(environ: dict) -> Transport:
    """The transport for this request's response; call it once the server has sent the head."""
    if environ.get(REWRITTEN):
        return THROUGH_SERVER
    return GunicornSocket.of(environ.get(START_RESPONSE)) or THROUGH_SERVER


def client_socket(environ: dict) -> Any | None:
    """The request's socket: gunicorn's, or the one of gevent's pywsgi handler (python app.py)."""
    sock = environ.get("gunicorn.socket")
    if sock is None:  # pywsgi: start_response is a method of the connection's handler
        sock = getattr(getattr(environ.get(START_RESPONSE), "__self__", None), "socket", None)
    return sock


def force_close(environ: dict) -> None:
    """Ask gunicorn to close the connection after this response (no keep-alive); no-op elsewhere."""
    close = getattr(getattr(environ.get(START_RESPONSE), "__self__", None), "force_close", None)
    if close is not None:
        close()


def _plain_response(start_response: object) -> tuple[Any, Any]:
    """gunicorn's HTTP/1 `Response` behind `start_response` and its OS socket, when bytes may go
    around it: exactly that class (its HTTP/2 subclass frames bytes its own way), not TLS, and
    gevent's OS socket non-blocking. Else (None, None)."""
    resp = getattr(start_response, "__self__", None)
    if resp is None or _GunicornResponse is None or type(resp) is not _GunicornResponse:
        return None, None
    sock = resp.sock
    if isinstance(sock, (ssl.SSLSocket, _GeventSSLSocket)) or getattr(resp.cfg, "is_ssl", False):
        return None, None
    raw = getattr(sock, "_sock", None)  # gevent's socket keeps the OS socket non-blocking here
    if raw is None or raw.gettimeout() != 0.0:
        return None, None
    return resp, raw


def answer_whole(start_response: Callable[..., Any], body: bytes) -> tuple[bytes, ...]:
    """After `start_response`: send head and `body` in one write where gunicorn allows it.

    Returns what the server must still write: nothing when this wrote the whole
    response, else `(body,)`. Why: gunicorn writes a response's head and body
    with a `sendall` each (gevent's, with a getsockopt(2) and its bookkeeping);
    for a publish's small answer that was the largest part of answering it.
    The head is the one gunicorn builds (its own `default_headers`), so the
    bytes on the wire are the same; only a plain gunicorn response
    (_plain_response) of known length whose head is not out yet qualifies.
    """
    resp, raw = _plain_response(start_response)
    if resp is None or resp.headers_sent or resp.chunked or resp.response_length != len(body):
        return (body,)
    head = resp.default_headers()
    head.extend([f"{k}: {v}\r\n" for k, v in resp.headers])
    head.append("\r\n")
    data = "".join(head).encode("latin-1") + body
    resp.headers_sent = True  # from here on gunicorn writes nothing of this response
    resp.sent = len(body)
    send_whole(resp.sock, raw, data)
    return ()


def send_whole(sock: Any, raw: Any, data: bytes) -> None:
    """Send `data` on `sock`: one system call on its OS socket `raw` when that takes it all (a
    small answer, the usual case), else gevent's `sendall` for the rest (it waits for the socket,
    honouring its timeout, as the server's own write would)."""
    try:
        sent = raw.send(data)
    except BlockingIOError:
        sent = 0
    if sent < len(data):
        sock.sendall(data[sent:])


_last: list[Any] = [object(), b""]  # the last data framed, and its chunk (see chunk)


def chunk(data: bytes) -> bytes:
    """One HTTP/1.1 chunk holding `data` (gunicorn's framing of each write).

    The reader sends the same bytes object to every idle stream of a channel:
    the first stream frames it, the others reuse that chunk (an identity check).
    """
    if data is _last[0]:
        return _last[1]
    framed = b"%X\r\n%b\r\n" % (len(data), data)
    _last[0], _last[1] = data, framed
    return framed


class GunicornSocket:
    """The plain-TCP socket under gunicorn's HTTP/1.x response, written around its iterator loop."""

    __slots__ = ("_sock", "_send", "_frame", "lane", "busy", "rest", "closed", "_resp")
    direct = True

    def __init__(self, sock: Any, raw: Any, chunked: bool, resp: Any = None) -> None:
        self._resp = resp  # gunicorn's response, while gunicorn owns the connection (see detach)
        self._sock = sock
        self._send: Callable[[bytes], int] = raw.send
        self._frame: Callable[[bytes], bytes] = chunk if chunked else bytes
        self.lane: Callable[[bytes], int] | None = self._send if chunked else None  # see Transport
        self.busy = False  # the loop is in a write: a send now would cut into it
        self.rest = b""
        self.closed = False

    @classmethod
    def of(cls, start_response: object) -> GunicornSocket | None:
        """The socket under gunicorn's response, or None when this is not one we can write around.

        A plain gunicorn response (_plain_response) whose head was sent.
        """
        resp, raw = _plain_response(start_response)
        if resp is None or not resp.headers_sent:
            return None
        return cls(resp.sock, raw, bool(resp.chunked), resp)

    def detach(self) -> GunicornSocket:
        """Take the connection over from gunicorn, so the greenlet serving it can end.

        A duplicate descriptor keeps the TCP connection open when gunicorn closes
        its own. gunicorn is told to close after this response (no keep-alive: its
        greenlet would wait on the socket for a next request) and to write no
        closing chunk; `finish` writes it when the stream ends. The returned
        transport owns the connection; this one must not be used again.
        """
        resp, self._resp = self._resp, None
        sock = socket.socket(fileno=os.dup(self._sock.fileno()))  # gevent's socket: the service is patched
        sock.settimeout(self._sock.gettimeout())
        out = GunicornSocket(sock, sock._sock, self._frame is chunk)  # type: ignore[attr-defined]  # gevent's OS socket
        resp.chunked = False
        resp.force_close()
        self.closed = True
        return out

    def finish(self, final: bytes) -> bool:
        """End a detached response: `final`, the closing chunk, then close the connection.
        True when `final` went out."""
        self.write(final)
        sent = not self.closed
        if self._frame is chunk:
            self.write_raw(b"0\r\n\r\n")
        self.closed = True
        with contextlib.suppress(OSError):
            self._sock.close()
        return sent

    @property
    def socket(self) -> Any:
        """The socket (for the hang-up watcher of a detached stream)."""
        return self._sock

    def send_nowait(self, data: bytes) -> int:
        """Send a frame now if the stream is idle and the socket takes it: SENT, QUEUED (the loop writes it) or CLOSED."""
        if self.busy or self.rest:
            return QUEUED  # behind the loop's write, or behind the rest of a chunk
        if self.closed:
            return CLOSED
        # chunk's reuse of the last chunk, inline (once per delivery); else frame it
        framed = _last[1] if data is _last[0] and self._frame is chunk else self._frame(data)
        try:
            sent = self._send(framed)
        except BlockingIOError:
            return QUEUED
        except OSError:  # the peer is gone: the loop ends the response
            self.closed = True
            return CLOSED
        if sent < len(framed):
            self.rest = framed[sent:]
        return SENT

    def write(self, data: bytes) -> tuple[bytes, ...]:
        """Send the rest of a partial chunk, then `data`, yielding while the socket is full
        (it honours the socket's timeout). On failure the socket is shut, so the server's
        closing chunk fails at once (EPIPE) instead of waiting out the timeout again."""
        self.write_raw(self.rest + self._frame(data) if data else self.rest)
        return ()

    def write_raw(self, out: bytes) -> None:
        """Send bytes as they are (`rest` included by the caller); on failure `closed`."""
        self.rest = b""
        if not out or self.closed:
            return
        self.busy = True
        try:
            self._sock.sendall(out)
        except OSError:
            self.closed = True
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)
        finally:
            self.busy = False
