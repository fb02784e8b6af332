"""Subscription races on the cluster feed, each of which lost streams in the chat benchmark.

A burst of first subscriptions on a fresh feed: the feed's connection to a master is made by the first SSUBSCRIBE sent to it.
When many streams open at once (a deploy, the chat benchmark's connect burst),
several attaches reach a master's feed before it is connected; each must not
open a connection of its own: a subscription sent on a connection nobody reads
is never confirmed (the open fails after the subscribe timeout), or is
confirmed and then never delivers (the stream is silently deaf).

The same burst on two processes' buses with a routed channel (as the control
channel is) while events are published (the benchmark's priming): redis-py's
PubSub, which the feed first used, reconnected by itself after an error and read
its handshake on a socket the reader waited on; attaches failed and feeds restarted.

A channel left and joined again at once (a chat user switching back): the
answer to our own SUNSUBSCRIBE arrives when the channel is wanted again, and
must not pass for Redis dropping the subscription (which ends every stream);
and a SUNSUBSCRIBE that waited for the node's send lock while the channel was
wanted again must not be sent at all (the stream would be silently deaf).

A master that accepts the connection and never answers (SIGSTOP, a frozen VM)
cannot hold a feed's handshake, and with it the node's send lock, for ever.
"""

from __future__ import annotations

import random
import socket

import gevent
import pytest
import redis
from gevent.lock import Semaphore
from support.procs import wait_until

from chatgenius.bus import cluster_node_feed

from .test_cluster_contract import bus, make_cluster_bus  # noqa: F401  (bus: the cluster bus fixture)
from .test_contract import collect, ev, sub


def pubsub_clients(redis_cluster) -> dict[int, int]:
    """Pub/sub connections open on each master, by port."""
    counts = {}
    for node in redis_cluster.masters():
        with redis.Redis(host="127.0.0.1", port=node.port) as r:
            counts[node.port] = len(r.client_list(_type="pubsub"))
    return counts


def test_concurrent_first_attaches_share_one_connection_per_master_and_all_deliver(bus, redis_cluster):  # noqa: F811
    names = [f"channel:burst{i}" for i in range(60)]
    subs = [sub([names[i % len(names)]], name=f"b{i}") for i in range(240)]
    attaches = [gevent.spawn(bus.attach, s, list(s.channels)) for s in subs]
    gevent.joinall(attaches, timeout=30)
    assert [a.exception for a in attaches if a.exception] == []
    assert set(pubsub_clients(redis_cluster).values()) == {1}, "one feed connection per master"
    for i, name in enumerate(names):
        bus.publish([ev(name, i)])
    missing = [s.id for s in subs if len(collect(s, 1, timeout=5)) != 1]
    assert missing == [], f"{len(missing)} of {len(subs)} streams got nothing"


def test_a_channel_left_and_joined_again_at_once_keeps_the_feed(bus):  # noqa: F811
    name = "channel:rejoin"
    first = sub([name], name="first")
    bus.attach(first, [name])
    for n in range(5):
        bus.detach(first)  # the last local subscriber: SUNSUBSCRIBE
        first = sub([name], name=f"again{n}")
        bus.attach(first, [name])  # wanted again before that answer is read
    bystander = sub(["channel:other"], name="bystander")
    bus.attach(bystander, ["channel:other"])
    bus.publish([ev(name, 1)])
    assert len(collect(first, 1)) == 1
    gevent.sleep(0.2)
    assert (bus.reader_reconnects, first.end_reason, bystander.end_reason) == (0, None, None)


def test_a_burst_under_publishing_on_two_buses_with_a_routed_channel(redis_cluster_nodes):
    buses = [make_cluster_bus(redis_cluster_nodes) for _ in range(2)]
    try:
        for b in buses:
            b.route(b"cg:ctl:{burst}", lambda data: None)  # restarts each feed once, routes first
        wait_until(lambda: all(b.health() is None and b.reader_reconnects == 1 for b in buses), 10, message="feeds back")
        names = [f"channel:big{i}" for i in range(500)]
        subs = [sub([names[i % len(names)]], name=f"s{i}") for i in range(2000)]
        publishing = True

        def publish() -> None:
            while publishing:
                buses[0].publish([ev(random.choice(names), 0)])
                gevent.sleep(0.002)

        publishers = [gevent.spawn(publish) for _ in range(4)]
        attaches = [gevent.spawn(buses[i % 2].attach, s, list(s.channels)) for i, s in enumerate(subs)]
        gevent.joinall(attaches, timeout=60)
        publishing = False
        gevent.joinall(publishers, timeout=10)
        assert [a.exception for a in attaches if a.exception] == []
        assert [b.reader_reconnects for b in buses] == [1, 1], "no feed restarted during the burst"
        for s in subs:
            s.take(0)
        for i, name in enumerate(names):
            buses[1].publish([ev(name, i)])
        missing = [s.id for s in subs if not collect(s, 1, timeout=5)]
        assert missing == [], f"{len(missing)} of {len(subs)} streams got nothing"
    finally:
        for b in buses:
            b.close()


def test_a_late_sunsubscribe_of_a_channel_wanted_again_is_not_sent(bus):  # noqa: F811
    name = "channel:late"
    stream = sub([name], name="late")
    bus.attach(stream, [name])
    shard = bus.layout.of(name)
    # What a detach that waited on the node's send lock sends after the channel was joined again.
    bus._send(bus.client.nodes_manager.get_node_from_slot(shard.slot), "SUNSUBSCRIBE", shard.live(name))
    bus.publish([ev(name, 1)])
    assert len(collect(stream, 1)) == 1, "the stream went deaf"
    assert (bus.reader_reconnects, stream.end_reason) == (0, None)


def test_a_silent_master_cannot_hold_a_feed_handshake(monkeypatch):
    monkeypatch.setattr(cluster_node_feed, "FEED_IO_TIMEOUT", 0.5)
    silent = socket.socket()  # accepts (the kernel does) and never answers
    silent.bind(("127.0.0.1", 0))
    silent.listen(1)
    try:
        feed = cluster_node_feed.NodeFeed("127.0.0.1", silent.getsockname()[1], Semaphore())
        with gevent.Timeout(5, AssertionError("the handshake waited for ever")), pytest.raises(redis.TimeoutError):
            feed.connect()
        assert feed.dead
    finally:
        silent.close()
