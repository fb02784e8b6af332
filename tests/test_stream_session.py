"""The stream session in process (chatgenius/stream.py) on the in-memory bus: what each write holds.

The stream's end-to-end behaviour is proven on gunicorn elsewhere; these run the
same open_session/serve generator directly, fast enough for the mutation run
(`make mutation`): the first write, resume and reset, the replay overlap, live
frames, heartbeats, the token deadline, an ended subscriber and the release.
The last tests give the stream a GunicornSocket over a real socket pair as its
transport: the direct-write path, where the hub and the loop write to the socket.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator

import gevent
import pytest
from support.sse_parse import ChunkedDecoder, Comment, EventParser, Frame

from chatgenius.bus.memory import MemoryBus
from chatgenius.cursor import Cursor, parse
from chatgenius.events import draft
from chatgenius.stream import StreamBody, control_frame, jittered, open_session, serve
from chatgenius.subscriber import Subscriber
from chatgenius.wire import THROUGH_SERVER, GunicornSocket

A, B = "channel:a", "channel:b"


@pytest.fixture
def bus() -> Iterator[MemoryBus]:
    made = MemoryBus(maxlen=100, ttl=3600)
    made.hub.start_ticker(0.01)
    yield made
    made.close()


def publish(bus: MemoryBus, channel: str, n: int) -> str:
    cursor = bus.publish([draft({"channel": channel, "type": "message.created", "data": {"n": n}}, 65536)])[0]
    assert cursor is not None
    return cursor


def parsed(chunk: bytes) -> list[Frame | Comment]:
    return EventParser().feed(chunk)


def open_stream(bus: MemoryBus, after: Cursor | None = None, channels=(A, B), heartbeat=30.0, deadline=None, retry_ms=2000):
    sub = Subscriber(f"s{time.monotonic_ns()}", "alice", [], 1 << 20)
    sub.channels.update(channels)
    session = open_session(bus, sub, after, 100, heartbeat, retry_ms, deadline)
    closed: list[object] = []
    session.on_close = closed.append
    return session, serve(session, {"connection_id": sub.id, "resumed": after is not None}), closed


def test_first_write_is_retry_connected_then_the_replay_in_cursor_order(bus: MemoryBus):
    first = publish(bus, A, 0)
    rest = [publish(bus, ch, n) for n, ch in enumerate([B, A, B], 1)]
    publish(bus, "channel:other", 9)
    session, gen, _ = open_stream(bus, parse(first))
    head = next(gen)
    frames = parsed(head)
    assert head.startswith(b"retry: ")
    retry_ms = int(head.split(b"\n", 1)[0].split(b": ")[1])
    assert 1500 <= retry_ms <= 2500  # 2000 ± 25 %
    assert isinstance(frames[0], Frame) and frames[0].event == "system.connected" and frames[0].id is None
    assert frames[0].json()["resumed"] is True
    assert [f.id for f in frames[1:]] == rest and [f.json()["data"]["n"] for f in frames[1:]] == [1, 2, 3]
    assert session.stats.replayed == 3 and session.sub.sent == 3 and session.stats.reset == []
    gen.close()


def test_no_cursor_replays_nothing_and_a_cursor_of_another_epoch_is_a_reset_then_everything(bus: MemoryBus):
    ids = [publish(bus, A, n) for n in range(2)]
    _, fresh, _ = open_stream(bus, None)
    assert [f.event for f in parsed(next(fresh))] == ["system.connected"]
    fresh.close()
    session, gen, _ = open_stream(bus, Cursor("zzzzzz", 1))
    frames = parsed(next(gen))
    assert [f.event for f in frames] == ["system.connected", "system.reset", "message.created", "message.created"]
    assert frames[1].json() == {"channels": [A, B]} and frames[1].id is None
    assert [f.id for f in frames[2:]] == ids and session.stats.reset == [A, B]
    gen.close()


def test_live_frames_follow_and_a_frame_already_replayed_is_not_sent_again(bus: MemoryBus):
    start = publish(bus, A, 0)
    replayed = publish(bus, A, 1)
    session, gen, _ = open_stream(bus, parse(start))
    assert [f.id for f in parsed(next(gen))[1:]] == [replayed]
    # The overlap the floor exists for: a frame the replay already held, then queued live too.
    seq = parse(replayed).seq
    bus.hub.dispatch(A, seq, b"id: " + replayed.encode() + b"\nevent: message.created\ndata: {}\n\n")
    live = publish(bus, B, 2)
    got = parsed(next(gen))
    assert [f.id for f in got] == [live], got
    later = [publish(bus, A, 3), publish(bus, B, 4)]
    assert [f.id for f in parsed(next(gen))] == later  # whatever queued goes out in one write
    # A write is counted when the server comes back for the next one (after the yield).
    assert session.sub.sent == 1 + 1
    gen.close()


def test_an_idle_stream_sends_a_heartbeat_pending_until_its_write_came_back(bus: MemoryBus):
    session, gen, _ = open_stream(bus, heartbeat=0.05)
    next(gen)
    assert next(gen) == b": hb\n\n"
    assert session.stats.heartbeat_pending is True  # while the server writes it: a dead peer is found by it
    assert next(gen) == b": hb\n\n"
    live = publish(bus, A, 1)
    assert [f.id for f in parsed(next(gen))] == [live]
    assert session.stats.heartbeat_pending is False  # the last heartbeat's write came back
    gen.close()


def test_the_token_deadline_ends_the_stream_with_reauth(bus: MemoryBus):
    session, gen, closed = open_stream(bus, heartbeat=30, deadline=time.time() + 0.1)
    next(gen)
    end = parsed(next(gen))
    assert [(f.event, f.json()) for f in end] == [("system.reauth", {"reason": "token_expiring"})]
    with pytest.raises(StopIteration):
        next(gen)
    assert session.stats.end_reason == "token_expiring" and closed == [session]


def test_an_ended_subscriber_writes_its_frame_and_stops_and_is_released(bus: MemoryBus):
    session, gen, closed = open_stream(bus)
    next(gen)
    frame = control_frame("system.reconnect", {"retry_ms": 10})
    session.sub.end("slow_consumer", frame)
    session.sub.end("other", b"ignored")  # the first reason wins
    assert next(gen) == frame
    with pytest.raises(StopIteration):
        next(gen)
    assert session.stats.end_reason == "slow_consumer"
    assert closed == [session] and session.sub.id not in bus.hub.subscribers
    assert bus.hub.dispatch(A, 10**9, b"x") == 0  # detached from its channels


def test_closing_the_generator_releases_once(bus: MemoryBus):
    session, gen, closed = open_stream(bus)
    next(gen)
    gen.close()
    assert closed == [session] and session.stats.end_reason == "client_closed"
    assert session.sub.id not in bus.hub.subscribers


def test_a_body_closed_before_it_was_iterated_releases_the_session_once(bus: MemoryBus):
    session, _, closed = open_stream(bus)
    body = StreamBody(session, {"connection_id": "x"})
    body.close()
    body.close()
    assert closed == [session] and list(iter(body)) == []


def test_a_body_iterated_then_closed_releases_once(bus: MemoryBus):
    session, _, closed = open_stream(bus)
    body = StreamBody(session, {"connection_id": "x"})
    it = iter(body)
    assert iter(body) is it  # the server resumes serve()'s generator itself
    assert b"system.connected" in next(it)
    body.close()
    body.close()
    assert closed == [session]


def test_control_frames_and_jitter():
    assert control_frame("system.reset", {"channels": [A]}) == b'event: system.reset\ndata: {"channels":["channel:a"]}\n\n'
    values = {jittered(1000) for _ in range(200)}
    assert min(values) >= 500 and max(values) <= 1500 and len(values) > 50
    assert all(750 <= jittered(1000, 0.25) <= 1250 for _ in range(100))
    assert jittered(0) == 0


def test_a_failing_replay_detaches_before_raising(bus: MemoryBus, monkeypatch: pytest.MonkeyPatch):
    def down(*_args):
        raise RuntimeError("bus down")

    monkeypatch.setattr(bus, "replay", down)
    sub = Subscriber("s-fail", "alice", [A], 1 << 20)
    with pytest.raises(RuntimeError):
        open_session(bus, sub, None, 100, 30, 2000, None)
    assert "s-fail" not in bus.hub.subscribers


def test_json_of_the_connected_frame_is_what_the_view_passed(bus: MemoryBus):
    _, gen, _ = open_stream(bus)
    connected = parsed(next(gen))[0]
    assert json.loads(connected.data)["connection_id"].startswith("s")
    gen.close()


# -- the direct-write path: after the first write, a GunicornSocket is the stream's transport (chatgenius/wire.py) --
# A real socket pair stands for the connection: the hub and the loop write HTTP/1.1 chunks to it themselves.


def read_until(sock: socket.socket, want: bytes, timeout: float = 5.0) -> bytes:
    got = b""
    sock.settimeout(0.1)
    deadline = time.monotonic() + timeout
    while want not in got:
        assert time.monotonic() < deadline, f"never got {want!r}; got {got!r}"
        try:
            data = sock.recv(65536)
        except TimeoutError:
            continue
        assert data, f"peer closed; got {got!r}"
        got += data
    return got


def on_wire(bus: MemoryBus, server: socket.socket, **kw):
    session, gen, closed = open_stream(bus, **kw)
    session.transport = lambda: GunicornSocket(server, server._sock, True)
    head = next(gen)  # the first write goes through the server: it carries the head
    assert b"system.connected" in head
    assert next(gen) == b""  # then nothing for the server to hold; every later write is direct
    runner = gevent.spawn(lambda: list(gen))  # the server would now wait for the generator's end
    gevent.sleep(0)
    return session, runner, closed


def test_on_the_wire_live_frames_are_written_by_the_hub_as_chunks(bus: MemoryBus, socket_pair):
    server, client = socket_pair
    session, runner, closed = on_wire(bus, server)
    assert isinstance(session.sub.out, GunicornSocket)
    ids = [publish(bus, A, n) for n in range(3)]
    got = read_until(client, ids[-1].encode())
    frames = EventParser().feed(ChunkedDecoder().feed(got))
    assert [f.id for f in frames] == ids
    size, body = got.split(b"\r\n")[:2]
    assert int(size, 16) == len(body)  # chunk-framed: the hub wrote them in HTTP/1.1 chunks
    assert session.sub.sent == 3
    session.sub.end("slow_consumer", control_frame("system.reconnect", {"retry_ms": 5}))
    assert runner.get(timeout=5) == []  # nothing went through the server
    tail = read_until(client, b"system.reconnect")
    assert tail.endswith(b"\r\n") and session.stats.end_reason == "slow_consumer"
    assert closed == [session] and session.sub.out is THROUGH_SERVER  # the socket is the server's again


def test_on_the_wire_heartbeats_and_the_reauth_are_written_directly(bus: MemoryBus, socket_pair):
    server, client = socket_pair
    session, runner, closed = on_wire(bus, server, heartbeat=0.05, deadline=time.time() + 0.5)
    assert read_until(client, b"6\r\n: hb\n\n\r\n")
    read_until(client, b'event: system.reauth\ndata: {"reason":"token_expiring"}\n\n\r\n')
    assert runner.get(timeout=5) == []
    assert session.stats.end_reason == "token_expiring" and closed == [session]


def test_on_the_wire_a_peer_that_is_gone_ends_the_stream(bus: MemoryBus, socket_pair):
    server, client = socket_pair
    session, runner, closed = on_wire(bus, server, heartbeat=0.05)
    client.close()
    assert runner.get(timeout=5) == []  # the heartbeat's write failed: the loop returned
    assert closed == [session] and session.stats.end_reason == "client_closed"


def test_on_the_wire_frames_queued_while_behind_are_written_by_the_loop_in_order(bus: MemoryBus, socket_pair):
    """The hub queues when the stream is not idle (here: its loop is mid-write); the loop then writes them itself."""
    server, client = socket_pair
    session, runner, _ = on_wire(bus, server)
    session.sub.out.busy = True  # as if the loop were in a write: the hub must queue, not interleave
    ids = [publish(bus, A, n) for n in range(3)]
    assert session.sub.sent == 0 and session.sub.depth == 3  # nothing went out directly
    session.sub.out.busy = False  # the first queued frame woke the loop; it runs at the next switch
    got = read_until(client, ids[-1].encode())
    assert [f.id for f in EventParser().feed(ChunkedDecoder().feed(got))] == ids
    size, body = got.split(b"\r\n")[:2]
    assert int(size, 16) == len(body) and body.count(b"id: ") == 3  # one chunk holds the three
    assert session.sub.sent == 3
    session.sub.end("client_closed")
    runner.get(timeout=5)
