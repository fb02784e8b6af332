"""gunicorn's own request parser and Response over a loopback TCP pair, and its worker's write loop.

For fast tests of chatgenius/wire.py and the stream loop against the pinned
gunicorn's objects, without starting gunicorn.
"""

from __future__ import annotations

import socket

import gevent
from gunicorn.config import Config
from gunicorn.http import wsgi
from gunicorn.http.parser import RequestParser

from chatgenius.stream import StreamSession, serve
from chatgenius.wire import START_RESPONSE


def tcp_pair(bufsize: int = 0) -> tuple[socket.socket, socket.socket]:
    """A connected loopback TCP pair (an ephemeral port); small buffers make sends stop mid-chunk."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        client = socket.socket()
        if bufsize:
            client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, bufsize)
        client.connect(listener.getsockname())
        server, _ = listener.accept()
    if bufsize:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, bufsize)
    return server, client


class Connection:
    """One HTTP/1.1 request as gunicorn's gevent worker sees it: parsed, with its Response and environ."""

    def __init__(self, request: bytes = b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n", rcvbuf: int = 0, start: bool = True) -> None:
        self.server, self.client = tcp_pair(rcvbuf)
        self.client.sendall(request)
        cfg = Config()
        req = next(RequestParser(cfg, self.server, ("127.0.0.1", 1)))
        self.resp, self.environ = wsgi.create(req, self.server, ("127.0.0.1", 1), "127.0.0.1:8000", cfg)
        self.environ[START_RESPONSE] = self.resp.start_response
        if start:  # an SSE response's head, as the stream view starts it
            self.resp.start_response("200 OK", [("Content-Type", "text/event-stream")])

    def read_all(self, timeout: float = 5) -> bytes:
        """Everything the server sent until it closed its side, de-chunked (checks the framing)."""
        self.client.settimeout(timeout)
        raw = b""
        while chunk := self.client.recv(65536):
            raw += chunk
        head, _, body = raw.partition(b"\r\n\r\n")
        assert b"Transfer-Encoding: chunked" in head
        out = b""
        while True:
            size_line, _, body = body.partition(b"\r\n")
            size = int(size_line, 16)
            if size == 0:
                assert body == b"\r\n", "nothing after the last chunk"
                return out
            out, body = out + body[:size], body[size:]
            assert body[:2] == b"\r\n", "a chunk ends with CRLF"
            body = body[2:]

    def close(self) -> None:
        self.server.close()
        self.client.close()


def serve_like_gunicorn(conn: Connection, session: StreamSession) -> gevent.Greenlet:
    """gunicorn's base_async.handle_request write loop, closing chunk and socket included; the
    greenlet ends when the body does (a detached stream's body ends after its first write)."""

    def run() -> None:
        try:
            for item in serve(session, {"connection_id": "s"}):
                conn.resp.write(item)
            conn.resp.close()
        finally:
            conn.server.close()  # as gunicorn's handler does (util.close) once a response ends the connection

    loop = gevent.spawn(run)
    gevent.sleep(0)
    return loop
