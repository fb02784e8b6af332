"""The live feed's read (bus/redis_feed.FeedReplies) against a real Redis, through a relay that can
hold a reply half-sent: a wait that times out mid-reply keeps the connection and what arrived;
a peer that closes ends the read at once. Both ways it reads: off the socket (hiredis, the
service's) and through redis-py (its pure-Python parser stands in for a TLS connection)."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from urllib.parse import urlparse

import gevent
import pytest
import redis
from redis._parsers import _RESP2Parser

from chatgenius.bus.redis_feed import FeedReplies


class Relay:
    """127.0.0.1:port → Redis. Replies pass whole, unless `split` is set: then the next chunk from
    Redis goes out as its first `split` bytes, a pause of `hold` s, then the rest."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(1)
        self.port = self.listener.getsockname()[1]
        self.split = 0
        self.hold = 0.0
        self.conns: list[socket.socket] = []
        self.tasks = [gevent.spawn(self._accept)]

    def _accept(self) -> None:
        client, _ = self.listener.accept()
        upstream = socket.create_connection(self.target)
        self.conns += [client, upstream]
        self.tasks += [gevent.spawn(self._pump, client, upstream, False), gevent.spawn(self._pump, upstream, client, True)]

    def _pump(self, src: socket.socket, dst: socket.socket, replies: bool) -> None:
        try:
            while data := src.recv(65536):
                if replies and self.split and len(data) > self.split:
                    cut, self.split = self.split, 0
                    dst.sendall(data[:cut])
                    gevent.sleep(self.hold)
                    data = data[cut:]
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for conn in self.conns:
                conn.close()

    def close(self) -> None:
        gevent.killall(self.tasks)
        for conn in [*self.conns, self.listener]:
            conn.close()


@pytest.fixture(params=["direct", "redis-py"])
def relayed(request: pytest.FixtureRequest, redis_url: str) -> Iterator[tuple[Relay, redis.Connection, FeedReplies, redis.Redis]]:
    url = urlparse(redis_url)
    relay = Relay((url.hostname or "127.0.0.1", url.port or 6379))
    extra = {} if request.param == "direct" else {"parser_class": _RESP2Parser}
    conn = redis.Connection(host="127.0.0.1", port=relay.port, **extra)
    conn.connect()
    replies = FeedReplies(conn)
    assert replies.direct == (request.param == "direct")
    client = redis.Redis.from_url(redis_url)
    try:
        yield relay, conn, replies, client
    finally:
        replies.close()
        conn.disconnect()
        client.close()
        relay.close()


def read_until(replies: FeedReplies, timeout: float, within: float = 5.0) -> tuple[list, int]:
    """The next reply, waiting `timeout` s a read, and how many reads came back empty first."""
    empty, end = 0, time.monotonic() + within
    while time.monotonic() < end:
        reply = replies.next(timeout)
        if reply is not None:
            return reply, empty
        empty += 1
    raise AssertionError("no reply")


def test_a_wait_that_times_out_mid_reply_keeps_the_connection_and_the_part_that_arrived(relayed):
    relay, conn, replies, client = relayed
    conn.send_command("SUBSCRIBE", "feed")
    assert read_until(replies, 1.0)[0] == [b"subscribe", b"feed", 1]
    payload = b"x" * 5000
    relay.split, relay.hold = 100, 0.5  # the message's first 100 bytes, then half a second of nothing
    client.publish("feed", payload)
    reply, empty = read_until(replies, 0.1)
    assert empty >= 2, "the reads in between timed out while the reply was half there"
    assert reply == [b"message", b"feed", payload]
    assert conn._sock is not None, "a timeout must not drop the feed's connection"
    client.publish("feed", b"after")  # the connection still reads replies in order
    assert read_until(replies, 1.0)[0] == [b"message", b"feed", b"after"]


def test_a_quiet_feed_reads_nothing_and_a_closed_peer_ends_the_read(relayed):
    relay, conn, replies, _ = relayed
    conn.send_command("SUBSCRIBE", "feed")
    assert read_until(replies, 1.0)[0] == [b"subscribe", b"feed", 1]
    assert replies.next(0.05) is None
    for sock in relay.conns:
        sock.close()
    started = time.monotonic()
    with pytest.raises(redis.ConnectionError):
        replies.next(5.0)
    assert time.monotonic() - started < 2.0, "EOF ends the read; it does not wait out the timeout"


def test_a_wait_of_zero_takes_the_replies_that_came_with_the_one_waited_for(relayed):
    _, conn, replies, client = relayed
    conn.send_command("SUBSCRIBE", "feed")
    assert read_until(replies, 1.0)[0] == [b"subscribe", b"feed", 1]
    with client.pipeline(transaction=False) as pipe:  # three messages in one write from Redis
        for n in range(3):
            pipe.publish("feed", b"m%d" % n)
        pipe.execute()
    got = [replies.next(1.0)]
    while (reply := replies.next(0)) is not None:
        got.append(reply)
    assert [r[2] for r in got] == [b"m0", b"m1", b"m2"]
    assert replies.next(0) is None


def test_timeouts_that_race_arrivals_lose_nothing_and_keep_the_order(relayed):
    """A wait is two watchers (the socket's, a timer), started and stopped each time: short waits
    that keep timing out around arrivals still read every message once, in order."""
    _, conn, replies, client = relayed
    conn.send_command("SUBSCRIBE", "feed")
    assert read_until(replies, 1.0)[0] == [b"subscribe", b"feed", 1]

    def publish() -> None:
        for n in range(300):
            client.publish("feed", b"%d" % n)
            gevent.sleep(0.0005 * (n % 4))

    publisher = gevent.spawn(publish)
    got: list[bytes] = []
    timeouts = 0
    end = time.monotonic() + 10
    while len(got) < 300 and time.monotonic() < end:
        reply = replies.next(0.001)
        if reply is None:
            timeouts += 1
            gevent.sleep(0)  # another greenlet's turn: a stray wake-up of this one would land here
        else:
            got.append(reply[2])
    publisher.get(timeout=5)
    assert got == [b"%d" % n for n in range(300)]
    assert timeouts > 0, "the waits must have timed out in between"


def test_a_busy_readers_turn_lets_a_greenlet_waiting_on_its_socket_run_first():
    """let_io_in gives the loop a turn with its I/O polled: a publish waiting for its request or
    its Redis answer gets in by the reader's next turn (the first turn's poll finds the socket
    ready; libev runs that turn's own wake-up first). gevent.sleep(0) resumes the caller before
    the loop polls: ten of them let nothing in."""
    from chatgenius.bus.redis_feed import let_io_in

    a, b = socket.socketpair()
    got: list[bytes] = []
    waiting = gevent.spawn(lambda: got.append(a.recv(10)))
    try:
        gevent.sleep(0)  # it now waits on its socket
        b.sendall(b"ready")
        let_io_in()
        let_io_in()
        assert got == [b"ready"]
    finally:
        waiting.kill()
        a.close()
        b.close()
