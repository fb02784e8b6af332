"""The hub's direct writes (chatgenius/fanout.py) through a GunicornSocket over a real socket pair.

A stream idle on a direct transport is written by the hub itself (Subscriber.offer
-> SENT); one whose loop is writing, that has frames queued, or that holds the
rest of a partial send gets frames queued instead (QUEUED); a frame inside the
replay overlap, or for an ended stream, is not taken (CLOSED). These pin that
split, the partial-send remainder, the run joining and the counts the telemetry
reads, fast enough for the mutation run (`make mutation`). The transport against
gunicorn's own objects, and the stream loop over it, are tests/test_wire.py's.
"""

from __future__ import annotations

import socket
import time

import gevent
import pytest

from chatgenius.fanout import Hub
from chatgenius.subscriber import Subscriber
from chatgenius.wire import CLOSED, QUEUED, GunicornSocket

CH = "channel:w"


@pytest.fixture
def pair(socket_pair: tuple[socket.socket, socket.socket]) -> tuple[socket.socket, socket.socket]:
    return socket_pair


def wired(server: socket.socket, hub: Hub, name: str = "s") -> Subscriber:
    """A subscriber of CH whose head is out: its transport is the server end, chunked (HTTP/1.1)."""
    sub = Subscriber(name, "u", [], 1 << 20)
    hub.add(sub, [CH])
    sub.out = GunicornSocket(server, server._sock, True)
    assert sub.out.direct
    return sub


def chunk(data: bytes) -> bytes:
    """One HTTP/1.1 chunk (written here, not taken from wire.py: the framing is checked too)."""
    return b"%X\r\n%b\r\n" % (len(data), data)


def recv_all(sock: socket.socket, size: int, timeout: float = 5.0) -> bytes:
    sock.settimeout(0.2)
    got = b""
    deadline = time.monotonic() + timeout
    while len(got) < size and time.monotonic() < deadline:
        try:
            got += sock.recv(size - len(got))
        except TimeoutError:
            continue
    return got


def frame(n: int) -> bytes:
    return b"id: e-%d\nevent: message.created\ndata: {}\n\n" % n


def test_an_idle_wired_stream_is_written_by_the_hub_in_one_chunk(pair):
    server, client = pair
    hub = Hub()
    sub = wired(server, hub)
    seen = []
    hub.on_dispatch = lambda f, subs, written: seen.append((subs, written))
    assert hub.dispatch(CH, 1, frame(1)) == 1
    assert recv_all(client, len(chunk(frame(1)))) == chunk(frame(1))
    assert sub.take(0) == [] and sub.sent == 1 and seen == [(1, 1)]


def test_a_stream_that_is_writing_or_behind_gets_the_frame_queued_not_written(pair):
    server, client = pair
    hub = Hub()
    sub = wired(server, hub)
    sub.out.busy = True  # its loop is in a write: the hub must not interleave bytes
    hub.dispatch(CH, 1, frame(1))
    sub.out.busy = False
    hub.dispatch(CH, 2, frame(2))  # frames are queued: this one goes behind them, not around
    assert sub.take(0) == [(1, frame(1)), (2, frame(2))] and sub.sent == 0
    client.settimeout(0.2)
    with pytest.raises(TimeoutError):
        client.recv(10)


def test_frames_inside_the_replay_overlap_are_dropped_and_the_first_above_it_ends_the_check(pair):
    server, client = pair
    hub = Hub()
    sub = wired(server, hub)
    sub.set_floor(5)
    hub.dispatch(CH, 5, frame(5))
    hub.dispatch(CH, 4, frame(4))
    assert recv_all(client, 1, timeout=0.3) == b"" and sub.take(0) == []
    hub.dispatch(CH, 6, frame(6))
    assert sub.floor == 0
    assert recv_all(client, len(chunk(frame(6)))) == chunk(frame(6))


def test_a_run_goes_as_one_chunk_to_an_idle_stream_and_counts_every_event(pair):
    server, client = pair
    hub = Hub()
    sub = wired(server, hub)
    seen = []
    hub.on_dispatch = lambda f, subs, written: seen.append((f, subs, written))
    frames = [(n, frame(n)) for n in (1, 2, 3)]
    assert hub.dispatch_run(CH, frames) == 1
    joined = b"".join(f for _, f in frames)
    assert recv_all(client, len(chunk(joined))) == chunk(joined)  # one chunk, in order
    assert sub.sent == 3
    assert seen == [(frame(1), 1, 0), (frame(2), 1, 0), (frame(3), 1, 3)]


def test_a_run_that_starts_inside_the_overlap_is_queued_frame_by_frame_and_filtered(pair):
    server, client = pair
    hub = Hub()
    sub = wired(server, hub)
    sub.set_floor(2)
    hub.dispatch_run(CH, [(n, frame(n)) for n in (2, 3, 4)])
    # 2 is at the floor (already replayed): dropped; 3 ends the overlap and goes to the wire; 4 follows it.
    got = recv_all(client, len(chunk(frame(3))) + len(chunk(frame(4))))
    assert got == chunk(frame(3)) + chunk(frame(4))
    assert sub.take(0) == [] and sub.sent == 2


def test_a_partial_send_keeps_the_rest_as_the_next_bytes_and_wakes_the_loop(pair):
    server, client = pair
    server.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    hub = Hub()
    sub = wired(server, hub)
    loop = gevent.spawn(sub.take, None)  # the stream's loop, parked with nothing to write
    gevent.sleep(0)
    big = b"data: " + b"x" * 400_000 + b"\n\n"
    hub.dispatch(CH, 1, big)
    rest = sub.out.rest
    assert rest, "the kernel took part of it: the transport keeps the rest"
    assert chunk(big).endswith(rest) and rest != chunk(big)
    assert sub.sent == 1, "a partial send counts as sent"
    assert loop.get(timeout=5) == [], "the parked loop is woken to write the rest"
    assert sub.offer(2, frame(2)) == QUEUED  # behind the rest, not cut into it
    # The loop's next write (stream.serve): the rest, then what queued behind it.
    reader = gevent.spawn(recv_all, client, len(chunk(big)) + len(chunk(frame(2))), 30)
    assert sub.out.write(b"".join(f for _, f in sub.take(0))) == () and not sub.out.rest
    assert reader.get(timeout=30) == chunk(big) + chunk(frame(2))


def test_a_gone_peer_ends_the_stream_as_client_closed(pair):
    server, client = pair
    hub = Hub()
    sub = wired(server, hub)
    client.close()
    for n in range(1, 50):  # the first send may still succeed into the buffer; the peer's RST ends it
        hub.dispatch(CH, n, frame(n))
        if sub.end_reason:
            break
    assert sub.end_reason == "client_closed" and sub.out.closed
    assert sub.offer(99, frame(99)) == CLOSED
    assert (99, frame(99)) not in sub.take(0)  # an ended stream takes nothing more


def test_a_run_of_one_is_an_ordinary_dispatch_on_its_channel(pair):
    server, client = pair
    hub = Hub()
    sub = wired(server, hub)
    other = Subscriber("o", "u", [], 1 << 20)
    hub.add(other, ["channel:other"])
    assert hub.dispatch_run(CH, [(1, frame(1))]) == 1
    assert hub.dispatch_run("channel:none", [(2, frame(2)), (3, frame(3))]) == 0
    assert recv_all(client, len(chunk(frame(1)))) == chunk(frame(1))
    assert other.take(0) == [] and sub.sent == 1


def test_a_dispatch_stamps_every_stream_it_wrote_with_one_clock_reading(pair):
    """last_write (what spares a busy stream its heartbeat) comes from the dispatch, read once."""
    server, client = pair
    other_server, other_client = socket.socketpair()
    try:
        hub = Hub()
        subs = [wired(server, hub, "a"), wired(other_server, hub, "b")]
        for sub in subs:
            sub.last_write = 0.0
        before = time.monotonic()
        hub.dispatch(CH, 1, frame(1))
        stamps = {sub.last_write for sub in subs}
        assert len(stamps) == 1 and before <= stamps.pop() <= time.monotonic()
        assert recv_all(other_client, len(chunk(frame(1)))) == chunk(frame(1))
    finally:
        other_server.close()
        other_client.close()


def test_an_offer_without_the_dispatch_clock_reads_the_clock_itself(pair):
    server, client = pair
    sub = wired(server, Hub())
    sub.last_write = 0.0
    before = time.monotonic()
    assert sub.offer(1, frame(1)) != CLOSED and before <= sub.last_write <= time.monotonic()
    assert sub.offer(2, frame(2), 12.5) != CLOSED and sub.last_write == 12.5
    assert recv_all(client, 2 * len(chunk(frame(1)))) == chunk(frame(1)) + chunk(frame(2))
