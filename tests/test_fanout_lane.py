"""The hub's lane (chatgenius/fanout.py): idle streams written in one C-level pass, over real sockets.

A stream the hub wrote to directly, and that is idle, joins its channels' lanes;
the next events reach it by its socket's send alone. Each change that could make
a send around the stream wrong takes it out first (frames queued, a partial
send, its loop about to write, its end), and what the lane sent is settled into
`sent` and `last_write`. These pin those moves and that no frame is lost or
written twice on any of them. The fan-out without a lane is tests/test_fanout_wire.py's.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import gevent
import pytest

from chatgenius.fanout import Hub
from chatgenius.subscriber import Subscriber
from chatgenius.wire import CLOSED, GunicornSocket

CH = "channel:lane"


@pytest.fixture
def pairs() -> Iterator[list[tuple[socket.socket, socket.socket]]]:
    """Connected socket pairs (gevent's, patched by conftest), closed after the test."""
    made: list[tuple[socket.socket, socket.socket]] = []
    yield made
    for server, client in made:
        server.close()
        client.close()


def wired(pairs: list, hub: Hub, name: str, channels: tuple[str, ...] = (CH,), sndbuf: int = 0) -> tuple[Subscriber, socket.socket]:
    """A stream on `channels` whose head is out (chunked transport on a new socket pair), and its client end."""
    server, client = socket.socketpair()
    pairs.append((server, client))
    if sndbuf:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, sndbuf)
    sub = Subscriber(name, "u", [], 64 << 20)
    hub.add(sub, list(channels))
    sub.out = GunicornSocket(server, server._sock, True)
    return sub, client


def chunk(data: bytes) -> bytes:
    """One HTTP/1.1 chunk (written here, not taken from wire.py)."""
    return b"%X\r\n%b\r\n" % (len(data), data)


def frame(n: int, pad: int = 0) -> bytes:
    return b"id: e-%d\nevent: message.created\ndata: {\"p\":\"%b\"}\n\n" % (n, b"y" * pad)


def drain(sock: socket.socket, timeout: float = 0.3) -> bytes:
    """Everything the client end holds now (until `timeout` s of quiet)."""
    sock.settimeout(timeout)
    got = b""
    while True:
        try:
            data = sock.recv(1 << 20)
        except TimeoutError:
            return got
        if not data:
            return got
        got += data


def joined_lane(pairs: list, hub: Hub, names: str = "ab", **kw) -> list[tuple[Subscriber, socket.socket]]:
    """Streams that took event 1 by offer and are now in the lane (what a first direct write does)."""
    streams = [wired(pairs, hub, n, **kw) for n in names]
    hub.dispatch(CH, 1, frame(1))
    assert hub.in_lane(CH) == len(streams), "an idle stream the hub wrote to joins the lane"
    for _, client in streams:
        assert drain(client) == chunk(frame(1))
    return streams


def test_an_idle_stream_joins_the_lane_and_each_event_arrives_once_and_is_counted(pairs):
    hub = Hub()
    seen = []
    hub.on_dispatch = lambda f, subs, written: seen.append(written)
    streams = joined_lane(pairs, hub)
    for n in (2, 3):
        assert hub.dispatch(CH, n, frame(n)) == 2
    for sub, client in streams:
        assert drain(client) == chunk(frame(2)) + chunk(frame(3))
        assert sub.sent == 3 and sub.depth == 0 and sub.lanes == {CH: 0}
    assert seen == [2, 2, 2]


def test_what_the_lane_sent_is_settled_into_sent_and_last_write(pairs):
    hub = Hub()
    (sub, _), = joined_lane(pairs, hub, "a")
    sub.last_write = 0.0
    before = time.monotonic()
    hub.dispatch(CH, 2, frame(2))
    assert sub.sent == 2 and sub.last_write == 0.0, "read live; last_write waits for a settle"
    sub.settle()
    assert before <= sub.last_write <= time.monotonic() and sub.sent == 2 and sub._sent == 2
    sub.sent += 5  # the stream's loop counting its own writes while in the lane
    hub.dispatch(CH, 3, frame(3))
    assert sub.sent == 8
    sub.leave_lanes()
    assert sub.lanes is None and sub._sent == 8 and hub.in_lane(CH) == 0


def test_a_full_socket_takes_the_stream_out_and_queues_the_frame_once_behind_nothing(pairs):
    hub = Hub()
    streams = joined_lane(pairs, hub, "ab", sndbuf=4096)
    (full, full_client), (other, other_client) = streams
    n, sent = 2, []
    while full.lanes is not None:  # fill its socket; the other's client reads as it goes
        hub.dispatch(CH, n, frame(n, 3000))
        sent.append(n)
        drain(other_client, 0.01)
        n += 1
    assert full.depth == 1 and hub.in_lane(CH) == 1, "the frame that did not fit waits in its queue"
    assert full.sent == len(sent), "the queued frame is not counted as sent"
    hub.dispatch(CH, n, frame(n, 3000))  # the next one goes behind it, not around it
    sent.append(n)
    assert full.depth == 2
    queued = full.take(0)
    assert [seq for seq, _ in queued] == sent[-2:]
    reader = gevent.spawn(drain, full_client, 1.0)
    full.out.write(b"".join(f for _, f in queued))
    got = reader.get(timeout=30)
    written = b"".join(chunk(frame(s, 3000)) for s in sent[:-2])  # one chunk a lane send
    assert got == written + chunk(frame(sent[-2], 3000) + frame(sent[-1], 3000)), "every frame once, in order"


def test_a_partial_send_in_the_lane_keeps_the_rest_counts_it_and_wakes_the_loop(pairs):
    hub = Hub()
    (sub, client), = joined_lane(pairs, hub, "a", sndbuf=4096)
    loop = gevent.spawn(sub.take, None)
    gevent.sleep(0)
    big = b"data: " + b"x" * 400_000 + b"\n\n"
    hub.dispatch(CH, 2, big)
    assert sub.lanes is None and hub.in_lane(CH) == 0
    assert sub.out.rest and chunk(big).endswith(sub.out.rest) and sub.sent == 2
    assert loop.get(timeout=5) == []
    hub.dispatch(CH, 3, frame(3))
    assert sub.depth == 1, "behind the rest, not cut into it"
    reader = gevent.spawn(drain, client, 1.0)
    sub.out.write(b"".join(f for _, f in sub.take(0)))
    assert reader.get(timeout=30) == chunk(big) + chunk(frame(3))


def test_a_stream_that_failed_in_the_lane_is_not_offered_the_frame_again(pairs):
    """A slow stream and a lane stream on one channel: the lane's failure moves its stream to the
    slow set during the dispatch, which must not hand it the same frame a second time."""
    hub = Hub()
    (lane_sub, lane_client), = joined_lane(pairs, hub, "a")
    slow_sub, slow_client = wired(pairs, hub, "b")
    slow_sub.out.busy = True  # its loop is writing: it queues
    lane_client.close()  # the lane's send fails (the peer is gone)
    for n in range(2, 40):
        hub.dispatch(CH, n, frame(n))
        if lane_sub.end_reason:
            break
    assert lane_sub.end_reason == "client_closed" and lane_sub.lanes is None
    assert [seq for seq, _ in slow_sub.take(0)] == list(range(2, n + 1))
    assert lane_sub.offer(99, frame(99)) == CLOSED


def test_taking_frames_ends_the_lane_until_the_hub_writes_to_an_idle_stream_again(pairs):
    hub = Hub()
    (sub, client), = joined_lane(pairs, hub, "a")
    assert sub.take(0) == [] and sub.lanes is None, "the loop is about to write: nothing around it"
    hub.dispatch(CH, 2, frame(2))
    assert sub.lanes == {CH: 0} and sub.sent == 2
    sub.end("test")
    assert sub.lanes is None and hub.in_lane(CH) == 0
    hub.dispatch(CH, 3, frame(3))
    assert drain(client) == chunk(frame(2)) and sub.sent == 2


def test_a_run_goes_through_the_lane_as_one_chunk(pairs):
    hub = Hub()
    streams = joined_lane(pairs, hub, "ab")
    frames = [(n, frame(n)) for n in (2, 3, 4)]
    seen = []
    hub.on_dispatch = lambda f, subs, written: seen.append(written)
    hub.dispatch_run(CH, frames)
    joined = b"".join(f for _, f in frames)
    for sub, client in streams:
        assert drain(client) == chunk(joined) and sub.sent == 4
    assert seen == [0, 0, 6]


def test_channels_added_and_removed_while_in_the_lane(pairs):
    hub = Hub()
    (sub, client), = joined_lane(pairs, hub, "a")
    hub.add(sub, ["channel:more"])
    assert hub.in_lane("channel:more") == 1 and sub.lanes == {CH: 0, "channel:more": 0}
    hub.dispatch("channel:more", 7, frame(7))
    hub.remove(sub, [CH])
    assert sub.lanes == {"channel:more": 0} and hub.in_lane(CH) == 0 and sub.sent == 2
    hub.dispatch(CH, 8, frame(8))  # no longer its channel
    hub.dispatch("channel:more", 9, frame(9))
    assert drain(client) == chunk(frame(7)) + chunk(frame(9)) and sub.sent == 3
    hub.remove(sub)
    assert sub._sent == 3 and not hub.channels()


def test_only_a_stream_past_its_replay_overlap_and_on_a_chunked_socket_joins(pairs):
    hub = Hub()
    overlap, overlap_client = wired(pairs, hub, "a")
    overlap.set_floor(5)
    plain, plain_client = wired(pairs, hub, "b")
    plain.out = GunicornSocket(plain.out._sock, plain.out._sock._sock, False)  # HTTP/1.0: no chunks
    hub.dispatch(CH, 6, frame(6))
    assert hub.in_lane(CH) == 1 and overlap.lanes == {CH: 0} and plain.lanes is None
    hub.dispatch(CH, 7, frame(7))
    assert drain(overlap_client) == chunk(frame(6)) + chunk(frame(7))
    assert drain(plain_client) == frame(6) + frame(7)
    overlap.set_floor(9)  # a floor set again takes it out (a cluster stream's set_position too)
    assert overlap.lanes is None


def test_sends_go_on_after_streams_that_failed_in_the_same_pass(pairs):
    hub = Hub()
    streams = joined_lane(pairs, hub, "abcde")
    gone = [streams[i] for i in (0, 2, 4)]
    for _, client in gone:
        client.close()
    sent = []
    for n in range(2, 60):  # a first send may still land in the buffer; the peer's RST fails a later one
        hub.dispatch(CH, n, frame(n))
        sent.append(n)
        if all(sub.end_reason for sub, _ in gone):
            break
    assert all(sub.end_reason == "client_closed" and sub.lanes is None for sub, _ in gone)
    assert hub.in_lane(CH) == 2
    for sub, client in (streams[1], streams[3]):
        assert drain(client) == b"".join(chunk(frame(n)) for n in sent) and sub.sent == 1 + len(sent)
