"""In-process servers for testing clients and proxies: a scripted raw socket and a stdlib HTTP server.

A raw script controls every byte and split (chunk boundaries, CRLF halves,
a stalled sender), which no real framework would produce on demand.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class ScriptedServer:
    """Accepts one connection, reads the request head, then runs `script(conn)` in a thread.

    `request` holds the raw request head; `result` is what the script returned (or the OSError it raised).
    """

    def __init__(self, script: Callable[[socket.socket], Any]) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.script, self.request, self.result = script, b"", None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(5)
            while b"\r\n\r\n" not in self.request:
                self.request += conn.recv(4096)
            try:
                self.result = self.script(conn)
            except OSError as exc:
                self.result = exc

    def __enter__(self) -> ScriptedServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.listener.close()
        self.thread.join(10)


def chunk(data: bytes) -> bytes:
    """One chunk of HTTP/1.1 chunked transfer-coding."""
    return b"%x\r\n%s\r\n" % (len(data), data)


@contextmanager
def serve_http(handler: type[BaseHTTPRequestHandler], **attrs: Any) -> Iterator[int]:
    """Run a ThreadingHTTPServer on a free port; `attrs` are set on the server for handlers to read."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    for k, v in attrs.items():
        setattr(server, k, v)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
