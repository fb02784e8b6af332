"""An idle stream holds no greenlet (DETACH_IDLE_STREAMS, detached.py), against gunicorn's own objects.

After head and replay, the stream takes its connection from gunicorn: the
greenlet that served the request ends, gunicorn closes its copy of the socket,
and the stream lives on as its socket, subscriber and session. The hub writes
to it directly; a greenlet comes back only to write a backlog, a heartbeat or
the deadline's frame (woken by the hub's ticker), or the closing frame.
"""

from __future__ import annotations

import socket
import time

import gevent
import pytest
from support.gunicorn_wire import Connection, serve_like_gunicorn
from support.stream_loop import CHAN, RacingBus, ev, frames_of, ids

from chatgenius.cursor import parse
from chatgenius.stream import StreamSession, open_session
from chatgenius.subscriber import Subscriber
from chatgenius.wire import SENT, transport_for


def until(cond, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        gevent.sleep(0.01)


def detached(bus: RacingBus, conn: Connection, after: str | None = None, heartbeat: float = 3600.0,
             deadline: float | None = None, max_bytes: int = 1 << 20) -> tuple[StreamSession, Subscriber, list]:
    sub = Subscriber("s", "u", [CHAN], max_bytes)
    session = open_session(bus, sub, parse(after) if after else None, 1000, heartbeat, 1000, deadline)
    session.transport = lambda: transport_for(conn.environ)
    session.detach = True
    closed: list[StreamSession] = []
    session.on_close = closed.append
    loop = serve_like_gunicorn(conn, session)
    loop.join(5)
    assert loop.dead and loop.successful(), "the greenlet that served the request ended after the first write"
    assert conn.server.fileno() == -1, "gunicorn closed its copy of the socket"
    return session, sub, closed


def test_a_detached_stream_gets_every_event_once_in_order_and_a_proper_end():
    bus = RacingBus()
    cursor = bus.publish([ev(0)])[0]
    bus.race = [ev(1)]
    conn = Connection()
    try:
        session, sub, closed = detached(bus, conn, cursor)
        live = [parse(bus.publish([ev(n)])[0]).seq for n in range(2, 12)]
        assert sub.sent == 1 + len(live)  # the replayed one, then each written by the hub itself
        assert not closed
        sub.end("test", b"event: test.end\ndata: {}\n\n")
        frames = frames_of(conn.read_all())  # checks the chunk framing and the closing chunk
        assert ids(frames) == [live[0] - 1, *live] and frames[-1]["event"] == "test.end"
        until(lambda: closed == [session])
        assert session.stats.end_reason == "test" and not bus.hub.subscribers
        sub.end("drain", b"late")  # e.g. a drain that listed it before it closed: released once only
        gevent.sleep(0.05)
        assert closed == [session]
    finally:
        conn.close()


def test_heartbeats_and_the_deadline_come_from_the_ticker_without_a_parked_greenlet():
    bus = RacingBus()
    bus.hub.start_ticker(0.02)
    conn = Connection()
    try:
        session, sub, closed = detached(bus, conn, heartbeat=0.1, deadline=time.time() + 0.6)
        raw = conn.read_all(10)
        assert raw.count(b": hb\n\n") >= 2
        assert frames_of(raw)[-1]["event"] == "system.reauth"
        until(lambda: closed == [session])
        assert session.stats.end_reason == "token_expiring"
    finally:
        conn.close()


def test_a_due_heartbeat_on_an_idle_socket_is_one_send_from_the_ticker_with_no_writer_greenlet(monkeypatch):
    from chatgenius import detached as detached_module

    spawned: list = []
    real_flush = detached_module._flush
    monkeypatch.setattr(detached_module, "_flush", lambda resume: spawned.append(resume) or real_flush(resume))
    bus = RacingBus()
    bus.hub.start_ticker(0.02)
    conn = Connection()
    try:
        session, sub, closed = detached(bus, conn, heartbeat=0.05)
        conn.client.settimeout(5)
        got = b""
        while got.count(b": hb\n\n") < 4:
            got += conn.client.recv(65536)
        assert spawned == [], "heartbeats went out without a writer greenlet"
        assert sub.due < float("inf") and not session.stats.heartbeat_pending, "re-armed after each"
        bus.publish([ev(1)])  # events still go out, and the end still brings the writer
        sub.end("test", b"event: test.end\ndata: {}\n\n")
        until(lambda: closed == [session])
        assert len(spawned) == 1
    finally:
        conn.close()


def test_events_the_hubs_lane_sent_spare_a_detached_stream_its_heartbeat():
    """The lane (fanout.Hub) does not stamp last_write per stream; the ticker's wake settles it first."""
    bus = RacingBus()
    bus.hub.start_ticker(0.02)
    conn = Connection()
    try:
        session, sub, closed = detached(bus, conn, heartbeat=0.3)
        live = []
        for n in range(12):  # 1.2 s of events every 0.1 s: four heartbeat intervals, none quiet
            live.append(parse(bus.publish([ev(n)])[0]).seq)
            if n == 1:
                assert sub.lanes is not None, "after one direct write the stream is in the lane"
            gevent.sleep(0.1)
        assert sub.sent == len(live)
        sub.end("test", b"event: test.end\ndata: {}\n\n")
        raw = conn.read_all(10)
        assert raw.count(b": hb\n\n") == 0 and ids(frames_of(raw)) == live
        until(lambda: closed == [session])
    finally:
        conn.close()


def test_a_writer_greenlet_takes_the_stream_out_of_the_hubs_lane_before_it_starts():
    """The writer's blocking write may yield with part of its bytes out: nothing may be sent around it."""
    bus = RacingBus()
    conn = Connection()
    try:
        session, sub, closed = detached(bus, conn, deadline=time.time() + 0.2)
        live = [parse(bus.publish([ev(n)])[0]).seq for n in range(2)]
        assert sub.lanes is not None, "after one direct write the stream is in the lane"
        time.sleep(0.25)  # past the deadline, no ticker: the wake-up below is the ticker's
        sub._wake.set()  # the deadline's system.reauth needs the writer
        assert sub.lanes is None and bus.hub.in_lane(CHAN) == 0, "out of the lane before the writer runs"
        frames = frames_of(conn.read_all(10))
        assert ids(frames[:-1]) == live and frames[-1]["event"] == "system.reauth"
        until(lambda: closed == [session])
    finally:
        conn.close()


def test_a_heartbeat_the_socket_does_not_take_goes_through_the_writer_and_arrives_once():
    bus = RacingBus()
    conn = Connection(rcvbuf=4096)
    try:
        session, sub, closed = detached(bus, conn, heartbeat=0.05, max_bytes=64 << 20)
        for n in range(200):  # fill the socket: frames queue behind it
            sub.offer(n + 1, b"data: " + b"z" * 2000 + b"\n\n")
        assert sub.depth, "the socket is full"
        bus.hub.start_ticker(0.02)
        gevent.sleep(0.2)  # heartbeats fall due while the socket is full
        reader = gevent.spawn(conn.read_all, 30)
        until(lambda: sub.sent == 200, 30)
        gevent.sleep(0.2)
        sub.end("test", b"event: test.end\ndata: {}\n\n")
        raw = reader.get(timeout=30)
        assert raw.count(b"z" * 2000) == 200 and frames_of(raw)[-1]["event"] == "test.end"
        assert b": hb\n\n" in raw
        until(lambda: closed == [session])
    finally:
        conn.close()


def test_a_heartbeat_to_a_vanished_client_ends_the_stream_and_counts_as_found_dead_by_it(monkeypatch):
    from chatgenius import detached as detached_module

    monkeypatch.setattr(detached_module, "watch", lambda sock, end: None)  # only the heartbeat can notice
    bus = RacingBus()
    conn = Connection()
    try:
        session, sub, closed = detached(bus, conn, heartbeat=0.05)
        conn.client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        conn.client.close()  # a reset: the next send fails
        bus.hub.start_ticker(0.02)
        until(lambda: closed == [session], 5)
        assert session.stats.end_reason == "client_closed" and session.stats.heartbeat_pending
    finally:
        conn.close()


def test_a_client_that_hangs_up_releases_a_detached_stream_at_once():
    bus = RacingBus()
    conn = Connection()
    try:
        session, sub, closed = detached(bus, conn)
        conn.client.close()
        until(lambda: closed == [session], 5)
        assert session.stats.end_reason == "client_closed" and not bus.hub.subscribers
    finally:
        conn.close()


def test_a_full_socket_brings_a_writer_back_and_every_byte_arrives_once():
    bus = RacingBus()
    conn = Connection(rcvbuf=4096)
    try:
        session, sub, closed = detached(bus, conn, max_bytes=64 << 20)
        pad = "y" * 3001
        seqs, outcomes = [], []
        bus.hub.on_dispatch = lambda frame, subs, written: outcomes.append(written)
        for n in range(300):
            d = ev(n)
            seqs.append(parse(bus.publish([type(d)(d.channel, d.type, d.body.replace('"n":', f'"pad":"{pad}","n":'))])[0]).seq)
        assert 0 < sum(outcomes) < len(seqs), "the hub wrote until the socket filled, then frames queued"
        reader = gevent.spawn(conn.read_all, 30)
        until(lambda: sub.sent == len(seqs), 30)
        sub.end("test", b"event: test.end\ndata: {}\n\n")
        frames = frames_of(reader.get(timeout=30))
        assert ids(frames) == seqs and frames[-1]["event"] == "test.end"
        until(lambda: closed == [session])
    finally:
        conn.close()


def test_a_stuck_client_is_cut_off_as_a_slow_consumer():
    bus = RacingBus()
    conn = Connection(rcvbuf=4096)
    try:
        session, sub, closed = detached(bus, conn, max_bytes=64 << 10)
        sub.out._sock.settimeout(0.5)  # the send timeout web/stream.py sets, short for the test
        results = [sub.offer(n + 1, b"data: " + b"z" * 2000 + b"\n\n") for n in range(400)]
        assert SENT in results and sub.end_reason == "slow_consumer"
        until(lambda: closed == [session], 10)
        assert session.stats.end_reason == "slow_consumer"
    finally:
        conn.close()


@pytest.mark.parametrize("detach", [False, True])
def test_only_a_detached_stream_lets_go_of_gunicorns_greenlet(detach):
    bus = RacingBus()
    conn = Connection()
    try:
        sub = Subscriber("s", "u", [CHAN], 1 << 20)
        session = open_session(bus, sub, None, 1000, 3600.0, 1000, None)
        session.transport = lambda: transport_for(conn.environ)
        session.detach = detach
        loop = serve_like_gunicorn(conn, session)
        gevent.sleep(0.05)
        assert loop.dead is detach
        assert bus.publish([ev(1)]) and sub.sent == 1
        sub.end("test")
        conn.client.settimeout(5)
        conn.client.shutdown(socket.SHUT_WR)
        until(lambda: not bus.hub.subscribers)
        loop.join(5)
        assert loop.dead
    finally:
        conn.close()
