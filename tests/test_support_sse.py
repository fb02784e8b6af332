"""Self-tests of the SSE test client: the pure parser stages, then real sockets end to end."""

from __future__ import annotations

import socket
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest
from support.local_http import ScriptedServer, chunk, serve_http
from support.sse_client import SSEClient
from support.sse_parse import ChunkedDecoder, Comment, EventParser, Frame

# -- SSE parsing ----------------------------------------------------------------

PARSE_TABLE: list[tuple[bytes, list[Frame | Comment]]] = [
    (b"data: a\n\n", [Frame("a")]),
    (b"data: a\r\n\r\n", [Frame("a")]),
    (b"data: a\r\r", [Frame("a")]),
    (b"data: a\r\ndata: b\rdata: c\n\r\n", [Frame("a\nb\nc")]),
    (b"event: ping\nid: 7\nretry: 1500\ndata: {}\n\n", [Frame("{}", "ping", "7", 1500)]),
    (b"data:a\n\ndata:  b\n\ndata: a:b\n\n", [Frame("a"), Frame(" b"), Frame("a:b")]),
    (b"id: 1\x002\ndata: x\n\n", [Frame("x")]),
    (b"data\n\ndata:\n\n", [Frame(""), Frame("")]),
    (b"event: x\nid: 3\n\ndata: y\n\n", [Frame("y")]),
    (b"foo: bar\nretry: 1s\ndata: y\n\n", [Frame("y")]),
    (b": hb\n\n:\ndata: y\n\n", [Comment(" hb"), Comment(""), Frame("y")]),
    (b"data: a\n\ndata: unfinished\n", [Frame("a")]),
    (b"\xef\xbb\xbfdata: a\n\n", [Frame("a")]),
    ("data: é€😀\n\n".encode(), [Frame("é€😀")]),
]


def _parse(pieces: list[bytes]) -> list[Frame | Comment]:
    parser = EventParser()
    return [item for piece in pieces for item in parser.feed(piece)]


@pytest.mark.parametrize(("raw", "expected"), PARSE_TABLE)
def test_parser_gives_the_same_events_however_the_bytes_are_split(raw: bytes, expected: list[Frame | Comment]) -> None:
    assert _parse([raw]) == expected
    assert _parse([raw[i : i + 1] for i in range(len(raw))]) == expected
    for cut in range(len(raw) + 1):
        assert _parse([raw[:cut], raw[cut:]]) == expected, cut


def test_parser_keeps_the_sticky_last_event_id_and_retry() -> None:
    parser = EventParser()
    parser.feed(b"id: 5\nretry: 300\ndata: a\n\ndata: b\n\n")
    assert (parser.last_event_id, parser.retry) == ("5", 300)
    parser.feed(b"id\ndata: c\n\n")
    assert parser.last_event_id == ""


def test_chunked_decoder_handles_any_split_extensions_and_trailers() -> None:
    raw = b"5;ext=1\r\nhello\r\n1\r\n \r\na\r\n0123456789\r\n0\r\nX-Trailer: 1\r\n\r\nNEXT"
    for cut in range(len(raw) + 1):
        dec = ChunkedDecoder()
        out = dec.feed(raw[:cut]) + dec.feed(raw[cut:])
        assert out == b"hello 0123456789" and dec.done, cut


# -- SSE client over real sockets -----------------------------------------------


def test_client_streams_chunked_events_counts_heartbeats_and_sees_the_end() -> None:
    gate = threading.Event()

    def script(conn: socket.socket) -> None:
        conn.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n" + chunk(b": hb\n\nid: 1\ndata: a")
        )
        conn.sendall(chunk(b"\r\n\r\n:\n"))
        gate.wait(5)
        conn.sendall(chunk(b"id: 2\ndata: b\n\n") + b"0\r\n\r\n")
        time.sleep(0.5)  # keep-alive: the stream ends by the terminator, not by EOF

    with ScriptedServer(script) as srv, SSEClient(f"http://127.0.0.1:{srv.port}/s?x=1", headers={"Last-Event-ID": "0"}) as client:
        assert client.status == 200 and client.headers["content-type"] == "text/event-stream"
        assert client.next(2) == Frame("a", id="1")
        assert client.wait_comments(2, 2) and len(client.comments) == 2
        assert client.next(0.2) is None and not client.closed
        gate.set()
        assert client.collect(1, 2) == [Frame("b", id="2")]
        assert client.wait_closed(0.4) and client.next(0.1) is None
        assert client.last_event_id == "2" and client.raw_bytes_received > 100
    assert srv.request.startswith(b"GET /s?x=1 HTTP/1.1\r\n")
    assert b"Last-Event-ID: 0\r\n" in srv.request and b"Accept: text/event-stream" in srv.request


def test_client_reads_a_json_error_body() -> None:
    body = b'{"error": "unauthorized"}'

    def script(conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        time.sleep(0.5)

    with ScriptedServer(script) as srv, SSEClient(f"http://127.0.0.1:{srv.port}/") as client:
        assert client.status == 401 and not client.is_stream
        assert client.json_body(2) == {"error": "unauthorized"}


def _headers_then_recv(conn: socket.socket) -> bytes | OSError:
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n")
    try:
        return conn.recv(1)
    except ConnectionResetError as exc:
        return exc


def test_abort_resets_the_connection_where_close_ends_it_cleanly() -> None:
    with ScriptedServer(_headers_then_recv) as clean:
        SSEClient(f"http://127.0.0.1:{clean.port}/").close()
    with ScriptedServer(_headers_then_recv) as reset:
        SSEClient(f"http://127.0.0.1:{reset.port}/").abort()
    assert clean.result == b""
    assert isinstance(reset.result, ConnectionResetError)


def test_rcvbuf_client_that_never_reads_pushes_back_on_the_sender() -> None:
    stalled = threading.Event()

    def script(conn: socket.socket) -> int:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n")
        conn.settimeout(1)
        sent = 0
        try:
            while sent < 64 << 20:
                sent += conn.send(b"data: x\n\n" * 1000)
        except TimeoutError:
            stalled.set()
        return sent

    with ScriptedServer(script) as srv:
        client = SSEClient(f"http://127.0.0.1:{srv.port}/", rcvbuf=4096)
        with client:
            assert client.sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) <= 16384
            assert stalled.wait(20), "the sender never blocked"
    assert isinstance(srv.result, int) and srv.result < 16 << 20


class _GzipStream(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        gate: threading.Event = self.server.gate  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Content-Encoding", "gzip")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        z = zlib.compressobj(wbits=16 + zlib.MAX_WBITS)
        self.wfile.write(chunk(z.compress(b": hi\n\nid: 1\ndata: one\n\n") + z.flush(zlib.Z_SYNC_FLUSH)))
        self.wfile.flush()
        gate.wait(5)
        self.wfile.write(chunk(z.compress(b"data: two\n\n") + z.flush(zlib.Z_FINISH)) + b"0\r\n\r\n")

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_gzip_events_decode_incrementally_before_the_stream_ends() -> None:
    gate = threading.Event()
    with serve_http(_GzipStream, gate=gate) as port:
        try:
            with SSEClient(f"http://127.0.0.1:{port}/", accept_gzip=True) as client:
                assert client.headers["Content-Encoding"] == "gzip"
                first = client.next(3)  # the server is parked on `gate`: nothing has ended
                assert first == Frame("one", id="1") and client.comments and not client.closed
                gate.set()
                assert client.next(3) == Frame("two") and client.wait_closed(3)
        finally:
            gate.set()
