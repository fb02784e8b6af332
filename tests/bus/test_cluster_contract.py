"""The bus contract on Redis Cluster (RedisClusterBus), three masters with a replica each.

The contract tests that do not read the cursor's form are the shared suite's own
functions, collected here again with `bus` built on the cluster. Cursors differ
(a vector of per-shard positions, chatgenius/shard_cursor.py), so ordering,
resume and reset have cluster versions below: per shard, across masters.
"""

from __future__ import annotations

import time

import gevent
import pytest
from support.procs import wait_until

from chatgenius.bus.cluster_shards import make_cluster_client
from chatgenius.bus.redis_cluster import RedisClusterBus
from chatgenius.shard_cursor import Vector, parse_vector, unpack
from chatgenius.state.redis_cluster import RedisClusterState

from .test_contract import (  # noqa: F401  (collected again, on the cluster)
    RECONNECT,
    collect,
    ev,
    sub,
    test_a_retry_of_a_request_that_went_through_is_not_rate_limited,
    test_concurrent_acquires_never_exceed_the_limit,
    test_detach_releases_the_channel,
    test_ephemeral_events_are_live_only,
    test_event_keys_in_a_batch_skip_seen_events_and_publish_the_rest,
    test_keys_of_different_scopes_never_meet,
    test_leases_are_capped_per_owner_and_freed_on_release,
    test_setnx_keeps_the_first_value,
    test_slow_subscriber_is_dropped_with_memory_bounded,
    test_ticket_expires_after_its_ttl,
    test_ticket_is_taken_exactly_once,
    test_ticket_taken_by_racing_workers_is_taken_once,
    test_two_racing_duplicates_publish_once,
    test_unrefreshed_leases_expire_and_refreshed_ones_do_not,
)

SHARDS = 8


def make_cluster_bus(nodes: str, maxlen: int = 100) -> RedisClusterBus:
    addresses = [(h, int(p)) for h, p in (a.rsplit(":", 1) for a in nodes.split(","))]
    bus = RedisClusterBus(make_cluster_client(addresses), SHARDS, maxlen, 3600, lambda s: RECONNECT)
    bus.start()
    wait_until(lambda: bus.health() is None, 10, message="cluster bus feed connected")
    return bus


@pytest.fixture
def bus(redis_cluster_nodes: str):
    b = make_cluster_bus(redis_cluster_nodes)
    yield b
    b.close()


@pytest.fixture
def state(bus):
    """Tickets and leases (RedisClusterState) on the cluster bus' command client: every key is one slot."""
    return RedisClusterState(bus.client)


def channels_on_distinct_masters(bus: RedisClusterBus, cluster, count: int = 3) -> list[str]:
    """`count` channel names whose shards live on `count` different masters."""
    found: dict[int, str] = {}
    n = 0
    while len(found) < count:
        name = f"channel:c{n}"
        port = cluster.master_of(bus.layout.of(name).slot).port
        found.setdefault(port, name)
        n += 1
    return list(found.values())


def test_a_cursor_is_small_and_parses_back(bus):
    head = bus.head()
    assert len(head.positions) == SHARDS
    text = str(head)
    assert len(text) <= 200 and "-" not in text
    assert parse_vector(text, SHARDS) == head


def test_live_delivery_per_shard_in_order_without_id_line(bus, redis_cluster):
    names = channels_on_distinct_masters(bus, redis_cluster)
    s = sub(names)
    bus.attach(s, names)
    ids = [bus.publish([ev(names[n % 3], n)])[0] for n in range(30)]
    frames = collect(s, 30)
    assert len(frames) == 30
    by_shard: dict[int, list[int]] = {}
    for packed, frame in frames:
        shard, seq = unpack(packed)
        by_shard.setdefault(shard, []).append(seq)
        assert frame.startswith(b'event: message.created\ndata: {"id":"')
    assert all(seqs == sorted(seqs) for seqs in by_shard.values())
    assert sorted(f.split(b'"id":"')[1].split(b'"')[0].decode() for _, f in frames) == sorted(ids)


def test_resume_across_masters_is_exact(bus, redis_cluster):
    names = channels_on_distinct_masters(bus, redis_cluster)
    before = [bus.publish([ev(names[n % 3], n)])[0] for n in range(9)]
    cursor = parse_vector(str(bus.head(names)), SHARDS)
    after = [bus.publish([ev(names[n % 3], n)])[0] for n in range(9, 30)]
    found = bus.replay(names, cursor, 100)
    assert found.reset == []
    assert sorted(r.cursor for r in found.events) == sorted(after)
    assert not set(before) & {r.cursor for r in found.events}
    again = bus.replay(names, found.head, 100)
    assert again.events == [] and again.reset == []


def test_no_gap_no_duplicate_when_publishing_during_resume(bus, redis_cluster):
    names = channels_on_distinct_masters(bus, redis_cluster)
    for n in range(10):
        bus.publish([ev(names[n % 3], n)])
    cursor = bus.head(names)
    published: list[str] = []

    def publisher() -> None:
        for n in range(10, 110):
            published.extend(i for i in bus.publish([ev(names[n % 3], n)]) if i)
            if n % 5 == 0:
                gevent.sleep(0)

    s = sub(names)
    g = gevent.spawn(publisher)
    gevent.sleep(0)
    bus.attach(s, names)
    found = bus.replay(names, cursor, 1000)
    g.join(timeout=10)
    position = Vector(found.head.positions)
    live = [f for packed, f in collect(s, 100, timeout=3) if position.advance(packed)]
    delivered = [r.cursor for r in found.events] + [f.split(b'"id":"')[1].split(b'"')[0].decode() for f in live]
    assert sorted(delivered) == sorted(published) and len(delivered) == len(set(delivered))


def test_a_lost_shard_resets_only_its_own_channels(bus, redis_cluster):
    names = channels_on_distinct_masters(bus, redis_cluster)
    for n in range(6):
        bus.publish([ev(names[n % 3], n)])
    cursor = bus.head(names)
    victim = redis_cluster.master_of(bus.layout.of(names[0]).slot)
    with victim.client() as c:
        c.flushall()  # the shard's master lost everything (and its replica follows)
    later = [bus.publish([ev(name, 100)])[0] for name in names]
    found = bus.replay(names, cursor, 100)
    lost = [n for n in names if redis_cluster.master_of(bus.layout.of(n).slot) is victim]
    assert found.reset == lost
    assert sorted(r.cursor for r in found.events) == sorted(later)


def test_a_single_redis_cursor_resets_every_channel_cleanly(bus, redis_cluster):
    from chatgenius.cursor import Cursor

    names = channels_on_distinct_masters(bus, redis_cluster)
    ids = [bus.publish([ev(name, 1)])[0] for name in names]
    found = bus.replay(names, Cursor("abcdef", 12), 100)
    assert sorted(found.reset) == sorted(names) and sorted(r.cursor for r in found.events) == sorted(ids)


def test_a_batch_over_shards_keeps_input_order(bus, redis_cluster):
    names = channels_on_distinct_masters(bus, redis_cluster)
    ids = bus.publish([ev(names[0], 1), ev(names[1], 2), ev(names[0], 3)])
    epochs = [i.rsplit("-", 1)[0] for i in ids]
    assert epochs[0] == epochs[2] != epochs[1]
    assert int(ids[2].rsplit("-", 1)[1]) == int(ids[0].rsplit("-", 1)[1]) + 1


def test_feed_connections_are_per_node_not_per_channel(bus, redis_cluster):
    names = [f"channel:n{n}" for n in range(40)]
    subs = [sub(names[i::4]) for i in range(4)]
    for i, s in enumerate(subs):
        bus.attach(s, names[i::4])
    assert len(bus._feeds) <= len(redis_cluster.masters())
    time.sleep(0)


def test_a_shard_whose_writer_lost_a_tail_gets_a_new_epoch(bus, redis_cluster):
    # What a failover to a replica that missed a tail looks like: the shard's seq is below what
    # streams saw, and its history was written by another process. The feed's restart (forced here
    # by killing its connections) must fence it off (tests/bus/test_writer_fence.py) before serving.
    names = channels_on_distinct_masters(bus, redis_cluster)
    s = sub(names)
    bus.attach(s, names)
    for n in range(6):
        bus.publish([ev(names[n % 3], n)])
    collect(s, 6)
    cursor = bus.head(names)
    shard = bus.layout.of(names[0])
    master = redis_cluster.master_of(shard.slot)
    with master.client() as c:
        c.decrby(shard.seq_key, 1)
        c.set(shard.epoch_key + ":writer", "0" * 40)
        c.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
    wait_until(lambda: s.end_reason == "bus_lost", 5, message="stream ended with the feed")
    wait_until(lambda: bus.health() is None and bus.reader_reconnects >= 1, 10, message="feed back")
    found = bus.replay(names, cursor, 100)
    assert found.reset == [names[0]]
    assert found.head.positions[shard.index][0] != cursor.positions[shard.index][0]


@pytest.mark.slow
def test_a_resharded_slot_ends_the_feed_and_resumes_exactly(make_redis_cluster):
    # A slot that moves takes its shard channels with it: Redis SUNSUBSCRIBEs us. The feed must
    # end (streams resume) rather than stay deaf, and subscribe again on the new owner.
    cluster = make_redis_cluster()
    b = make_cluster_bus(cluster.startup_nodes)
    try:
        name = "channel:moving"
        shard = b.layout.of(name)
        s = sub([name])
        b.attach(s, [name])
        cursor = b.head([name])
        before = [b.publish([ev(name, n)])[0] for n in range(5)]
        assert len(collect(s, 5)) == 5
        target = next(m for m in cluster.masters() if m is not cluster.master_of(shard.slot))
        cluster.move_slot(shard.slot, target)
        wait_until(lambda: s.end_reason == "bus_lost", 5, message="stream ended when its slot moved")
        wait_until(lambda: b.health() is None and b.reader_reconnects >= 1, 10, message="feed back")
        again = sub([name])
        b.attach(again, [name])
        after = [b.publish([ev(name, n)])[0] for n in range(5, 8)]
        assert len(collect(again, 3)) == 3
        found = b.replay([name], cursor, 100)
        assert found.reset == [] and [r.cursor for r in found.events] == before + after
    finally:
        b.close()


def test_a_moved_reply_on_the_feed_restarts_it(bus, redis_cluster):
    # What a stale slot map does: SSUBSCRIBE sent to a node that does not own the slot.
    shard = bus.layout.of("channel:a")
    s = sub(["channel:a"])
    bus.attach(s, ["channel:a"])
    wrong = next(m for m in redis_cluster.masters() if m is not redis_cluster.master_of(shard.slot))
    node = next(n for n in bus.client.get_nodes() if n.port == wrong.port)
    bus._send(node, "SSUBSCRIBE", shard.live("channel:a"))
    wait_until(lambda: s.end_reason == "bus_lost", 5, message="the stream ended with the feed")
    wait_until(lambda: bus.health() is None and bus.reader_reconnects >= 1, 10, message="feed back")
    again = sub(["channel:a"])
    bus.attach(again, ["channel:a"])
    bus.publish([ev("channel:a", 1)])
    assert len(collect(again, 1)) == 1
