"""kill -9 of one cluster master under a steady publish: no loss, or a reset of that shard's channels only.

Bus-level: a publisher over three channels whose shards live on three different
masters, and a client that does what a stream does (attach, replay from its
position vector, then live frames stamped with shard_cursor.stamp) and resumes
whenever the bus ends its stream. Every (channel, n) the publisher was told is
stored must reach the client exactly once, unless the client was told that
channel was reset; only channels of the killed master's shard may be.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable

import gevent
import pytest
import redis
from bus.test_cluster_contract import channels_on_distinct_masters, ev, make_cluster_bus, sub
from support.procs import wait_until
from support.redis_cluster import RedisCluster

from chatgenius.bus.base import BusUnavailable
from chatgenius.bus.redis_cluster import RedisClusterBus
from chatgenius.shard_cursor import Vector, stamp


def number(body: bytes | str) -> tuple[str, int]:
    text = body if isinstance(body, str) else body.split(b"data: ", 1)[1].decode()
    envelope = json.loads(text)
    return envelope["channel"], envelope["data"]["n"]


class ResumingClient:
    """A stream's steps over the bus, reconnecting with its vector whenever the bus ends it."""

    def __init__(self, bus: RedisClusterBus, names: list[str]) -> None:
        self.bus, self.names = bus, names
        self.position = bus.head(names)
        self.got: list[tuple[str, int]] = []
        self.resets: list[str] = []
        self.reconnects = 0
        self.stop = False

    def run(self) -> None:
        while not self.stop:
            s = sub(self.names)
            try:
                self.bus.attach(s, self.names)
                found = self.bus.replay(self.names, self.position, 100_000)
            except BusUnavailable:
                self.bus.detach(s)
                gevent.sleep(0.1)
                continue
            self.resets += found.reset
            self.got += [number(r.envelope) for r in found.events]
            self.position = Vector(found.head.positions)
            while not self.stop and s.end_reason is None:
                for packed, body in s.take(0.1):
                    if stamp(self.position, packed, body) is not None:
                        self.got.append(number(body))
            self.bus.detach(s)
            self.reconnects += s.end_reason is not None


@pytest.mark.slow
def test_kill_9_of_a_master_loses_nothing_or_resets_only_its_shard(make_redis_cluster: Callable[..., RedisCluster]) -> None:
    cluster = make_redis_cluster()
    bus = make_cluster_bus(cluster.startup_nodes)
    try:
        names = channels_on_distinct_masters(bus, cluster)
        victim = cluster.master_of(bus.layout.of(names[0]).slot)
        client = ResumingClient(bus, names)
        reader = gevent.spawn(client.run)
        stored: set[tuple[str, int]] = set()
        unsure: set[tuple[str, int]] = set()
        n = 0

        def publish_some(count: int) -> None:
            nonlocal n
            for _ in range(count):
                name = names[n % 3]
                try:
                    bus.publish([ev(name, n)])
                    stored.add((name, n))
                except (BusUnavailable, redis.RedisError):
                    unsure.add((name, n))  # may or may not have been stored
                n += 1
                gevent.sleep(0.005)

        publish_some(150)
        killer = gevent.spawn(cluster.kill_master, victim)
        while not killer.ready():
            publish_some(10)
        killer.get()
        wait_until(lambda: bus.health() is None and bus.reader_reconnects >= 1, 15, message="feed back after failover")
        publish_some(150)
        wait_until(lambda: stored <= set(client.got) | {e for e in stored if e[0] in client.resets}, 15, message="client caught up")
        client.stop = True
        reader.join(timeout=5)

        assert client.reconnects >= 1  # the bus ended the stream: it did not re-route silently
        assert set(client.resets) <= {names[0]}, client.resets  # only the killed master's shard
        kept = [e for e in client.got if e[0] not in client.resets]
        assert not [e for e, c in Counter(kept).items() if c > 1], "duplicates"
        assert {e for e in stored if e[0] not in client.resets} <= set(kept), "lost events"
        assert set(client.got) <= stored | unsure
        print(f"published {len(stored)} (+{len(unsure)} unsure), resets {client.resets}, reconnects {client.reconnects}")
    finally:
        bus.close()
        time.sleep(0)


@pytest.mark.slow
def test_a_failover_that_lost_a_tail_skips_nothing_stored_after_it(make_redis_cluster: Callable[..., RedisCluster]) -> None:
    # The replica's link is cut, then ten events are stored and delivered on the master only, then
    # the master is killed: the promoted replica holds seq 20 of 30, and publishing goes on at once
    # through another process' bus. The seqs 21.. are issued again, to other events; the stream,
    # whose cursor says 30, must get every one of them (after a reset: it saw events that are gone).
    cluster = make_redis_cluster()
    bus = make_cluster_bus(cluster.startup_nodes)
    other = make_cluster_bus(cluster.startup_nodes)  # another worker's: publishes only
    try:
        (name,) = channels_on_distinct_masters(bus, cluster, 1)
        shard = bus.layout.of(name)
        victim = cluster.master_of(shard.slot)
        victim_id = next(v.node_id for v in cluster.view() if v.port == victim.port)
        replica = cluster.node(next(v.port for v in cluster.view() if v.master_id == victim_id))
        client = ResumingClient(bus, [name])
        reader = gevent.spawn(client.run)
        for n in range(20):
            other.publish([ev(name, n)])
        wait_until(lambda: len(client.got) == 20, 5, message="live delivery")
        with replica.client() as r:
            r.execute_command("READONLY")
            wait_until(lambda: int(r.get(shard.seq_key) or 0) == 20, 5, message="replicated")
        replica.pause()
        with victim.client() as v:
            v.execute_command("CLIENT", "KILL", "TYPE", "replica")  # what is written from here on stays on the master
        for n in range(20, 30):
            other.publish([ev(name, n)])
        wait_until(lambda: len(client.got) == 30, 5, message="the tail delivered live")
        victim.kill()
        replica.resume()
        stored = set(range(20))
        n = 100
        while n < 150:
            try:
                other.publish([ev(name, n)])
            except (BusUnavailable, redis.RedisError):
                gevent.sleep(0.05)  # the failover is not over yet
                continue
            stored.add(n)
            n += 1
            gevent.sleep(0.01)
        wait_until(lambda: {(name, x) for x in stored} <= set(client.got), 20, message="every stored event delivered")
        client.stop = True
        reader.join(timeout=5)
        assert client.resets == [name], "the stream saw seqs 21..30, which are gone: it is told"
        after_reset = client.got[client.got.index((name, 29)) + 1 :]
        assert not [e for e, c in Counter(after_reset).items() if c > 1], "duplicates"
    finally:
        bus.close()
        other.close()


@pytest.mark.slow
def test_kill_9_of_a_master_end_to_end(make_redis_cluster: Callable[..., RedisCluster]) -> None:
    # gunicorn (2 gevent workers) on the cluster; clients on two channels whose shards live on two
    # masters, reconnecting with their cursor as the JS client does; one master is killed.
    from support.actors import Publisher, ResilientClient
    from support.gunicorn import Gunicorn
    from support.http_json import get_json
    from support.service import dev_token, service_env

    from chatgenius.bus.cluster_shards import Layout

    cluster = make_redis_cluster()
    layout = Layout(8)  # REDIS_CLUSTER_SHARDS' default
    owners: dict[int, str] = {}
    n = 0
    while len(owners) < 2:
        owners.setdefault(cluster.master_of(layout.of(f"channel:k{n}").slot).port, f"channel:k{n}")
        n += 1
    (victim_port, a), (_, b) = owners.items()
    with Gunicorn(workers=2, env=service_env(None, REDIS_CLUSTER_NODES=cluster.startup_nodes)) as g:
        base = g.base_url
        token = dev_token(base, "svc", ["channel:*"], ["publish:events"])
        readers = [ResilientClient(base, dev_token(base, f"u{i}", ["channel:*"]), f"{a},{b}").start() for i in range(3)]
        wait_until(lambda: all(r.connected for r in readers), 10, message="clients connected")
        pubs = [Publisher(base, token, a).start(), Publisher(base, token, b, next_n=100_000).start()]
        wait_until(lambda: all(len(p.acked) >= 20 for p in pubs), 15, message="publishing")
        cluster.kill_master(cluster.node(victim_port))
        wait_until(lambda: all("system.reconnect" in r.endings for r in readers), 15, message="streams told to reconnect")
        wait_until(lambda: get_json(f"{base}/readyz")[0] == 200, 15, message="ready again")
        counts = [len(p.acked) for p in pubs]
        wait_until(lambda: all(len(p.acked) >= c + 20 for p, c in zip(pubs, counts, strict=True)), 20, message="publishing again")
        for p in pubs:
            p.stop()
        resets = [r.get("reset") or [] for r in g.json_logs() if r.get("event") == "connection.open"]
        reset_a = any(a in rs for rs in resets)
        assert all(set(rs) <= {a} for rs in resets), resets  # only the killed master's shard may reset
        want = {n for p in pubs for n in p.acked if p.channel == b or not reset_a}
        wait_until(
            lambda: all(want <= set(r.received) for r in readers), 20,
            message="every client has every kept event: " + "; ".join(
                f"missing={sorted(want - set(r.received))[:8]} endings={r.endings[-5:]} resets={r.resets} last={r.last_id}"
                for r in readers
            ),
        )  # fmt: skip
        gevent.sleep(0.5)  # let a duplicate show up before counting
        for r in readers:
            r.stop()
            kept = [x for x in r.received if x >= 100_000 or not reset_a]
            assert not [x for x, c in Counter(kept).items() if c > 1], "duplicates"
            assert set(r.received) <= {x for p in pubs for x in (*p.acked, *p.failed)}
        print(f"acked {[len(p.acked) for p in pubs]}, failed {[len(p.failed) for p in pubs]}, reset of {a}: {reset_a}")


@pytest.mark.slow
def test_a_hung_master_ends_the_feed_and_the_stream_resumes(make_redis_cluster: Callable[..., RedisCluster]) -> None:
    # SIGSTOP: the connection stays open and silent. Only the feed's own PINGs can tell.
    cluster = make_redis_cluster()
    bus = make_cluster_bus(cluster.startup_nodes)
    try:
        names = channels_on_distinct_masters(bus, cluster)
        client = ResumingClient(bus, names)
        reader = gevent.spawn(client.run)
        gevent.sleep(0.2)
        for n in range(30):
            bus.publish([ev(names[n % 3], n)])
        wait_until(lambda: len(client.got) == 30, 5, message="live delivery")
        victim = cluster.master_of(bus.layout.of(names[0]).slot)
        victim.pause()
        wait_until(lambda: client.reconnects >= 1, 15, message="the silent feed was noticed")
        wait_until(lambda: bus.health() is None, 15, message="feed back")
        published = 30
        for n in range(30, 60):
            try:
                bus.publish([ev(names[n % 3], n)])
                published += 1
            except (BusUnavailable, redis.RedisError):
                pass
        wait_until(lambda: len(set(client.got)) >= published or client.resets, 15, message="resumed")
        client.stop = True
        reader.join(timeout=5)
        kept = [e for e in client.got if e[0] not in client.resets]
        assert not [e for e, c in Counter(kept).items() if c > 1], "duplicates"
        assert set(client.resets) <= {names[0]}
    finally:
        bus.close()
