"""The transport adapter (chatgenius/wire.py) against the pinned gunicorn's own response objects.

gunicorn's parser and `Response` are built over a socket pair, exactly as its
gevent worker builds them, and the stream loop runs under a copy of the
worker's write loop (`for item in body: resp.write(item)`). If a gunicorn
upgrade changes what wire.py probes, the direct (fast) path turns off: the
first test fails and says so, instead of the service silently slowing down.
"""

from __future__ import annotations

import socket
import time

import gevent
import gunicorn
import pytest
from gunicorn.http2.response import HTTP2Response
from support.gunicorn_wire import Connection, serve_like_gunicorn
from support.stream_loop import CHAN, RacingBus, ev, frames_of, ids

from chatgenius.cursor import parse
from chatgenius.stream import open_session
from chatgenius.subscriber import Subscriber
from chatgenius.wire import (
    CLOSED,
    QUEUED,
    REWRITTEN,
    SENT,
    START_RESPONSE,
    THROUGH_SERVER,
    GunicornSocket,
    answer_whole,
    transport_for,
)


def test_the_pinned_gunicorn_gives_streams_the_direct_path():
    conn = Connection()
    try:
        assert transport_for(conn.environ) is THROUGH_SERVER, "before the head is out, nothing goes around gunicorn"
        conn.resp.write(b"first")
        out = transport_for(conn.environ)
        assert isinstance(out, GunicornSocket) and out.direct, (
            f"the direct write path is OFF under gunicorn {gunicorn.__version__}: wire.GunicornSocket.of no "
            "longer recognises its response (see chatgenius/wire.py)"
        )
        assert out.send_nowait(b"data: 1\n\n") == SENT
        conn.resp.close()
        conn.server.shutdown(socket.SHUT_WR)
        assert conn.read_all() == b"firstdata: 1\n\n"
    finally:
        conn.close()


def test_responses_that_are_not_plain_http1_keep_the_servers_path():
    conn = Connection()
    try:
        conn.resp.write(b"first")
        assert transport_for({**conn.environ, REWRITTEN: True}) is THROUGH_SERVER  # compressed
        h2 = HTTP2Response(conn.resp.req, conn.server, conn.resp.cfg, None, 1)
        h2.headers_sent = True  # HTTP/2 frames its own bytes: chunks around it would corrupt the connection
        assert transport_for({START_RESPONSE: h2.start_response}) is THROUGH_SERVER
        assert transport_for({START_RESPONSE: lambda *a: None}) is THROUGH_SERVER  # pywsgi, anything else
        assert transport_for({}) is THROUGH_SERVER
        assert THROUGH_SERVER.send_nowait(b"x") == QUEUED and THROUGH_SERVER.write(b"x") == (b"x",)
    finally:
        conn.close()


def test_an_http10_response_is_written_unframed():
    conn = Connection(b"GET /stream HTTP/1.0\r\nHost: x\r\n\r\n")
    try:
        conn.resp.write(b"first")
        out = transport_for(conn.environ)
        assert isinstance(out, GunicornSocket) and not conn.resp.chunked
        assert out.send_nowait(b"data: 1\n\n") == SENT
        conn.server.shutdown(socket.SHUT_WR)
        conn.client.settimeout(5)
        raw = b""
        while chunk := conn.client.recv(65536):
            raw += chunk
        assert raw.endswith(b"\r\n\r\nfirstdata: 1\n\n")
    finally:
        conn.close()


def test_idle_streams_are_written_by_the_hub_every_event_once_in_order_with_the_floor_kept():
    bus = RacingBus()
    cursor = bus.publish([ev(0)])[0]
    bus.late = []
    bus.race = [ev(1), ev(2)]  # replayed, and their live frames reach the stream after it connected
    conn = Connection()
    try:
        sub = Subscriber("s", "u", [CHAN], 1 << 20)
        session = open_session(bus, sub, parse(cursor), 1000, 3600.0, 1000, None)
        session.transport = lambda: transport_for(conn.environ)
        loop = serve_like_gunicorn(conn, session)
        assert sub.out.direct
        bus.deliver_late()  # only the hub's floor stands between these and a duplicate on the socket
        live = [parse(bus.publish([ev(n)])[0]).seq for n in range(3, 13)]
        assert sub.sent == 2 + len(live) and sub.depth == 0  # replayed + written by the hub itself
        sub.end("test", b"event: test.end\ndata: {}\n\n")
        loop.join(5)
        assert loop.successful()
        frames = frames_of(conn.read_all())
        assert ids(frames) == [live[0] - 2, live[0] - 1, *live]
        assert frames[-1]["event"] == "test.end"
    finally:
        conn.close()


def test_a_full_socket_queues_behind_a_partial_chunk_and_the_loop_writes_every_byte_once():
    bus = RacingBus()
    conn = Connection(rcvbuf=4096)
    try:
        sub = Subscriber("s", "u", [CHAN], 64 << 20)
        session = open_session(bus, sub, None, 1000, 3600.0, 1000, None)
        session.transport = lambda: transport_for(conn.environ)
        loop = serve_like_gunicorn(conn, session)
        pad = "y" * 3001  # odd sizes: sends stop part-way through chunks
        outcomes: list[int] = []
        bus.hub.on_dispatch = lambda frame, subs, written: outcomes.append(written)
        seqs = []
        for n in range(300):  # ~1 MB: far past the socket buffers; nobody reads yet
            d = ev(n)
            d = type(d)(d.channel, d.type, d.body.replace('"n":', f'"pad":"{pad}","n":'))
            seqs.append(parse(bus.publish([d])[0]).seq)
        assert 0 < sum(outcomes) < len(seqs), "some sent by the hub, the rest queued once the socket filled"
        assert sub.depth > 0 or sub.out.rest
        reader = gevent.spawn(conn.read_all, 30)
        deadline = time.monotonic() + 30
        while sub.sent < len(seqs) and time.monotonic() < deadline:
            gevent.sleep(0.01)
        sub.end("test", b"event: test.end\ndata: {}\n\n")
        loop.join(30)
        assert loop.successful()
        frames = frames_of(reader.get(timeout=30))
        assert ids(frames) == seqs and frames[-1]["event"] == "test.end"
    finally:
        conn.close()


def test_a_bounded_queue_on_a_stuck_socket_ends_the_stream_as_a_slow_consumer():
    bus = RacingBus()
    conn = Connection(rcvbuf=4096)
    try:
        sub = Subscriber("s", "u", [CHAN], 64 << 10)
        session = open_session(bus, sub, None, 1000, 3600.0, 1000, None)
        session.transport = lambda: transport_for(conn.environ)
        conn.server.settimeout(0.5)  # the worker's send timeout (web/stream.py), short for the test
        loop = serve_like_gunicorn(conn, session)
        results = []
        for n in range(400):
            results.append(sub.offer(n + 1, b"data: " + b"z" * 2000 + b"\n\n"))
            gevent.sleep(0)
        assert results.count(SENT) > 0 and results.count(QUEUED) > 0 and results[-1] == CLOSED
        assert sub.end_reason == "slow_consumer" and sub.depth == 0
        loop.join(10)
        assert loop.dead and session.stats.end_reason == "slow_consumer"
    finally:
        conn.close()


def test_a_frame_never_overtakes_frames_queued_before_it():
    conn = Connection(rcvbuf=4096)
    try:
        conn.resp.write(b"first")
        sub = Subscriber("s", "u", [CHAN], 64 << 20)
        sub.out = transport_for(conn.environ)
        frame = b"data: " + b"q" * 3000 + b"\n\n"
        n = 0
        while sub.offer(n + 1, frame) != QUEUED:  # until the socket is full and one frame waits
            n += 1
        conn.client.settimeout(0.2)  # no loop runs here: read until the socket is empty again
        with pytest.raises(TimeoutError):
            while conn.client.recv(1 << 20):
                pass
        assert sub.out.write(b"") == () and not sub.out.rest and not sub.out.closed  # as the loop would first
        assert sub.offer(n + 2, frame) == QUEUED and [s for s, _ in sub.take(0)] == [n + 1, n + 2]
    finally:
        conn.close()


@pytest.mark.parametrize("chunked", [True, False])
def test_the_hub_hands_plain_frames_and_the_transport_frames_them(chunked):
    conn = Connection(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n" if chunked else b"GET /s HTTP/1.0\r\n\r\n")
    try:
        conn.resp.write(b"first")
        sub = Subscriber("s", "u", [CHAN], 1 << 20)
        sub.out = transport_for(conn.environ)
        frame = b"data: x\n\n"
        assert sub.offer(1, frame) == SENT and sub.offer(2, frame) == SENT
        conn.client.settimeout(5)
        got = b""
        want = (b"9\r\ndata: x\n\n\r\n" if chunked else frame) * 2
        while not got.endswith(want):
            got += conn.client.recv(65536)
    finally:
        conn.close()


ANSWER = b'{"ids":["1-x"]}\n'
PUBLISH = b"POST /events HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}"


def gunicorn_answer(conn, send) -> bytes:
    """What reaches the client when the app answers `ANSWER` and gunicorn's worker loop finishes the
    response (base_async.handle_request: write each item, close); `send` is the app's way of answering."""
    conn.resp.start_response("201 CREATED", [("Content-Type", "application/json"), ("Content-Length", str(len(ANSWER)))])
    for item in send(conn.resp.start_response):
        conn.resp.write(item)
    conn.resp.close()
    assert not conn.resp.should_close(), "the connection stays open for the next request"
    conn.server.shutdown(socket.SHUT_WR)
    conn.client.settimeout(5)
    raw = b""
    while chunk := conn.client.recv(65536):
        raw += chunk
    return raw


def test_a_small_answer_leaves_in_one_write_with_the_bytes_gunicorn_would_send():
    conns = [Connection(PUBLISH, start=False) for _ in range(2)]
    try:
        ours = gunicorn_answer(conns[0], lambda start_response: answer_whole(start_response, ANSWER))
        theirs = gunicorn_answer(conns[1], lambda start_response: [ANSWER])
    finally:
        for conn in conns:
            conn.close()
    assert conns[0].resp.headers_sent and conns[0].resp.sent == len(ANSWER)
    date = lambda raw: [line for line in raw.split(b"\r\n") if line.startswith(b"Date: ")]  # noqa: E731
    assert ours.replace(date(ours)[0], b"") == theirs.replace(date(theirs)[0], b""), (ours, theirs)
    assert ours.startswith(b"HTTP/1.1 201 CREATED\r\n") and ours.endswith(b"\r\n\r\n" + ANSWER)


def test_an_answer_gunicorn_must_frame_itself_is_left_to_it():
    conn = Connection(PUBLISH, start=False)
    try:
        conn.resp.start_response("201 CREATED", [("Content-Type", "application/json")])  # no length: chunked
        assert answer_whole(conn.resp.start_response, ANSWER) == (ANSWER,)
        assert not conn.resp.headers_sent
        assert answer_whole(lambda *a: None, ANSWER) == (ANSWER,)  # not gunicorn's (pywsgi, tests)
    finally:
        conn.close()
