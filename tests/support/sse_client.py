"""A blocking SSE test client on a raw socket, so tests see exactly what the server sent.

No library sits between the test and the wire: transfer-coding, gzip and
event parsing are done by the incremental stages in `sse_parse`, every read
has a timeout, and heartbeat comments are timestamped. `rcvbuf` plus never
reading makes a stalled consumer; `abort()` resets the connection (RST), the
closest userland gets to a peer that vanished.
"""

from __future__ import annotations

import collections
import io
import json
import socket
import struct
import time
from collections.abc import Callable, Mapping
from http.client import HTTPMessage, parse_headers
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlsplit

from .http_json import get_json, post_json
from .sse_parse import ChunkedDecoder, Comment, EventParser, Frame, GzipDecoder

__all__ = ["Frame", "SSEClient", "get_json", "post_json"]


class SSEClient:
    """GET `url` with Accept: text/event-stream; headers are read in the constructor.

    A 200 text/event-stream body is parsed into frames; any other answer is
    kept as a body for `json_body()`.
    """

    def __init__(
        self,
        url: str,
        headers: Mapping[str, str] | None = None,
        timeout: float = 10.0,
        accept_gzip: bool = False,
        rcvbuf: int | None = None,
    ) -> None:
        self.timeout = timeout
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"only http:// URLs are supported: {url!r}")
        host, port = parts.hostname, parts.port or 80
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            if rcvbuf is not None:  # before connect, so the advertised window is small too
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            self.sock.settimeout(timeout)
            self.sock.connect((host, port))
            lines = [f"GET {target} HTTP/1.1", f"Host: {parts.netloc}", "Accept: text/event-stream", "Cache-Control: no-cache"]
            if accept_gzip:
                lines.append("Accept-Encoding: gzip")
            lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
            self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
            self.raw_bytes_received = 0
            self._read_head()
        except BaseException:
            self.sock.close()
            raise
        self.frames: list[Frame] = []
        self.comments: list[float] = []
        self.comment_texts: list[str] = []
        self._pending: collections.deque[Frame] = collections.deque()
        self._body = bytearray()
        self.closed = False
        self._parser = EventParser()
        if self.status in (204, 304) or self._length_left == 0:
            self.closed = True  # no body follows (RFC 9112, 6.3)
        self._consume(self._leftover)

    # -- response head ----------------------------------------------------
    def _read_head(self) -> None:
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"connection closed before response headers: {buf!r}")
            self.raw_bytes_received += len(chunk)
            buf += chunk
        head, _, self._leftover = buf.partition(b"\r\n\r\n")
        status_line, _, header_block = head.partition(b"\r\n")
        self.status = int(status_line.split()[1])
        self.headers: HTTPMessage = parse_headers(io.BytesIO(header_block + b"\r\n\r\n"))
        te = self.headers.get("Transfer-Encoding", "").lower()
        self._chunked = ChunkedDecoder() if "chunked" in te else None
        gz = self.headers.get("Content-Encoding", "").lower() == "gzip"
        self._gzip = GzipDecoder() if gz else None
        length = self.headers.get("Content-Length")
        self._length_left = int(length) if length is not None and not self._chunked else None
        ctype = self.headers.get("Content-Type", "")
        self.is_stream = self.status == 200 and ctype.startswith("text/event-stream")

    # -- body pipeline: raw -> dechunk -> gunzip -> parse -----------------
    def _consume(self, raw: bytes) -> None:
        data = raw
        if self._chunked is not None:
            data = self._chunked.feed(raw)
        elif self._length_left is not None:
            data = raw[: self._length_left]
            self._length_left -= len(data)
        if self._gzip is not None and data:
            data = self._gzip.feed(data)
        if self.is_stream:
            now = time.monotonic()
            for item in self._parser.feed(data):
                if isinstance(item, Comment):
                    self.comments.append(now)
                    self.comment_texts.append(item.text)
                else:
                    self.frames.append(item)
                    self._pending.append(item)
        else:
            self._body += data
        if (self._chunked is not None and self._chunked.done) or self._length_left == 0:
            self.closed = True

    def pump(self, timeout: float | None = None) -> bool:
        """Read once (waiting up to `timeout`) and process it; False once the stream has ended."""
        if self.closed:
            return False
        self.sock.settimeout(max(0.001, self.timeout if timeout is None else timeout))
        try:
            raw = self.sock.recv(65536)
        except TimeoutError:
            return True
        except ConnectionResetError:
            raw = b""
        if not raw:
            self.closed = True
            return False
        self.raw_bytes_received += len(raw)
        self._consume(raw)
        return not self.closed

    # -- reading events ---------------------------------------------------
    def next(self, timeout: float | None = None) -> Frame | None:
        """The next event, or None if none arrives within `timeout` or the stream ends first."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while not self._pending and not self.closed:
            left = deadline - time.monotonic()
            self.pump(max(left, 0.001))  # at least one read, so next(0) polls
            if left <= 0:
                break
        return self._pending.popleft() if self._pending else None

    def read_until(self, pred: Callable[[Frame], bool], timeout: float | None = None) -> Frame:
        """Skip events until one satisfies `pred` and return it; AssertionError on timeout/close."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        seen: list[Frame] = []
        while True:
            frame = self.next(max(0.0, deadline - time.monotonic()))
            if frame is None:
                why = "stream closed" if self.closed else "timed out"
                raise AssertionError(f"{why} before a matching event; saw {seen!r}")
            if pred(frame):
                return frame
            seen.append(frame)

    def collect(self, n: int, timeout: float | None = None) -> list[Frame]:
        """Exactly the next `n` events; AssertionError if they do not all arrive in time."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        got: list[Frame] = []
        while len(got) < n:
            frame = self.next(max(0.0, deadline - time.monotonic()))
            if frame is None:
                why = "stream closed" if self.closed else "timed out"
                raise AssertionError(f"{why} after {len(got)}/{n} events: {got!r}")
            got.append(frame)
        return got

    def wait_comments(self, count: int, timeout: float | None = None) -> list[float]:
        """Read (buffering events) until `count` comments arrived in total; return their times."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while len(self.comments) < count:
            left = deadline - time.monotonic()
            if left <= 0 or not self.pump(left):
                raise AssertionError(f"got {len(self.comments)}/{count} comments (closed={self.closed})")
        return self.comments[:count]

    def wait_closed(self, timeout: float | None = None) -> bool:
        """Read (buffering events) until the server ends the stream; True if it did in time."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while not self.closed:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.pump(left)
        return True

    @property
    def last_event_id(self) -> str:
        """The spec's sticky lastEventId: what a browser would send as Last-Event-ID."""
        return self._parser.last_event_id

    @property
    def retry(self) -> int | None:
        """The last valid `retry:` value the server sent."""
        return self._parser.retry

    # -- non-stream answers -----------------------------------------------
    def body(self, timeout: float | None = None) -> bytes:
        """The whole (decoded) body of a non-event-stream answer."""
        if self.is_stream:
            raise RuntimeError("body() is for non-stream answers; use next()/collect()")
        if not self.wait_closed(timeout):
            raise AssertionError(f"body not complete in time: {bytes(self._body)!r}")
        return bytes(self._body)

    def json_body(self, timeout: float | None = None) -> Any:
        return json.loads(self.body(timeout))

    # -- ending -----------------------------------------------------------
    def close(self) -> None:
        """Orderly close (FIN)."""
        self.sock.close()

    def abort(self) -> None:
        """Close with SO_LINGER 0 so the kernel sends RST instead of FIN."""
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        self.sock.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.close()
