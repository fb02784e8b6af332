"""The writer fence (lua/publish.lua): a Redis process that did not write the history it holds.

A failover to a replica that missed a tail, or a restart from a disk that missed one, leaves a
Redis whose seq is below what streams were given; the seqs after it would be issued again, to other
events. The state such a Redis holds is made here directly: the writer key names another process
(the one that wrote the history), and the tail is gone (seq rewound, entries deleted). The feed's
connect (or the next publish) must start a new epoch that continues the old one up to what is kept:
cursors at or below it resume exactly, cursors above it reset, and no event stored after the
change is ever skipped by a replay.
"""

from __future__ import annotations

import pytest
import redis

from chatgenius.bus.redis_history import lineage_key
from chatgenius.bus.redis_publish import EPOCH_KEY, SEQ_KEY, history_key, live_channel, meta_key
from chatgenius.cursor import parse
from chatgenius.events import draft
from chatgenius.shard_cursor import Vector

from .test_contract import make_bus

CHAN = "channel:fence"
ANOTHER_PROCESS = "0" * 40  # a run_id no live redis-server has


def publish(bus, first: int, count: int, channel: str = CHAN) -> list[str]:
    drafts = [draft({"channel": channel, "type": "message.created", "data": {"n": n}}, 1 << 16) for n in range(first, first + count)]
    return bus.publish(drafts)


def numbers(found) -> list[int]:
    return [int(r.envelope.split('"n":')[1].split("}")[0]) for r in found.events]


def lose_tail(client: redis.Redis | redis.RedisCluster, epoch_key: str, seq_key: str, hist: str, meta: str, keep: int, top: int) -> None:
    """The state of a promoted replica that received seqs up to `keep` of `top`."""
    client.set(epoch_key + ":writer", ANOTHER_PROCESS)
    client.set(seq_key, keep)
    kept = client.xrange(hist, "-", f"{keep}-0")
    assert len(client.xrange(hist, f"{keep + 1}-0", "+")) == top - keep
    client.delete(hist)  # a stream that never had the tail: its last id is the kept one
    for entry_id, fields in kept:
        client.xadd(hist, fields, id=entry_id)
    client.hset(meta, "last", keep)


def test_a_new_writer_that_lost_a_tail_fences_it_off(redis_url):
    bus = make_bus("redis", redis_url)
    try:
        old = publish(bus, 0, 5)  # seqs 1..5
        lose_tail(bus.client, EPOCH_KEY, SEQ_KEY, history_key(CHAN), meta_key(CHAN), keep=3, top=5)
        bus.connecting()  # what the feed does on every connect, before it serves streams
        new = publish(bus, 10, 3)  # seqs 4..6 again, for other events
        old_epoch, new_epoch = parse(old[0]).epoch, parse(new[0]).epoch
        assert new_epoch != old_epoch
        assert bus.client.hgetall(lineage_key(EPOCH_KEY)) == {new_epoch.encode(): f"{old_epoch} 3".encode()}

        at_fence = bus.replay([CHAN], parse(old[2]), 100)  # saw seqs 1..3: all kept
        assert (at_fence.reset, numbers(at_fence)) == ([], [10, 11, 12])
        below = bus.replay([CHAN], parse(old[1]), 100)
        assert (below.reset, numbers(below)) == ([], [2, 10, 11, 12]), "the kept entries of the old epoch are replayed"
        above = bus.replay([CHAN], parse(old[4]), 100)  # saw 4 and 5, which are gone: told, and given what follows 3
        assert (above.reset, numbers(above)) == ([CHAN], [10, 11, 12])
        other = bus.replay([CHAN], parse(f"zzzzzzzzzzzzz-{2}"), 100)  # a lifetime the history does not continue: all of it
        assert (other.reset, numbers(other)) == ([CHAN], [0, 1, 2, 10, 11, 12]), "the kept entries of the old epoch are replayed"
        own = bus.replay([CHAN], parse(new[0]), 100)
        assert (own.reset, numbers(own)) == ([], [11, 12])
    finally:
        bus.close()


def test_a_new_writer_with_the_whole_history_keeps_every_cursor(redis_url):
    # A clean failover or a restart that lost nothing: a new epoch, and no client notices.
    bus = make_bus("redis", redis_url)
    try:
        old = publish(bus, 0, 5)
        bus.client.set(EPOCH_KEY + ":writer", ANOTHER_PROCESS)
        new = publish(bus, 10, 2)  # the first publish on the new writer fences too
        assert parse(new[0]).epoch != parse(old[0]).epoch and parse(new[0]).seq == 6
        found = bus.replay([CHAN], parse(old[4]), 100)
        assert (found.reset, numbers(found)) == ([], [10, 11])
    finally:
        bus.close()


def test_every_worker_fences_the_same_writer_once(redis_url):
    buses = [make_bus("redis", redis_url) for _ in range(3)]
    try:
        publish(buses[0], 0, 2)
        buses[0].client.set(EPOCH_KEY + ":writer", ANOTHER_PROCESS)
        for bus in buses:
            bus.connecting()
        assert len(buses[0].client.hgetall(lineage_key(EPOCH_KEY))) == 1
    finally:
        for bus in buses:
            bus.close()


def test_on_a_cluster_shard_a_new_writer_that_lost_a_tail_fences_it_off(redis_cluster_nodes):
    from .test_cluster_contract import make_cluster_bus

    bus = make_cluster_bus(redis_cluster_nodes)
    try:
        shard = bus.layout.of(CHAN)
        publish(bus, 0, 5)
        old_epoch = bus.client.get(shard.epoch_key).decode()
        lose_tail(bus.client, shard.epoch_key, shard.seq_key, shard.history_key(CHAN), shard.meta_key(CHAN), keep=3, top=5)
        bus._fence_writers()  # what the feed does on every (re)start, before it serves streams
        publish(bus, 10, 3)
        new_epoch = bus.client.get(shard.epoch_key).decode()
        assert new_epoch != old_epoch

        def at(epoch: str, seq: int) -> Vector:
            return Vector({shard.index: (epoch, seq)})

        at_fence = bus.replay([CHAN], at(old_epoch, 3), 100)
        assert (at_fence.reset, numbers(at_fence)) == ([], [10, 11, 12])
        below = bus.replay([CHAN], at(old_epoch, 2), 100)
        assert (below.reset, numbers(below)) == ([], [2, 10, 11, 12])
        above = bus.replay([CHAN], at(old_epoch, 5), 100)
        assert (above.reset, numbers(above)) == ([CHAN], [10, 11, 12])
        other = bus.replay([CHAN], at(shard.new_epoch(), 2), 100)
        assert (other.reset, numbers(other)) == ([CHAN], [0, 1, 2, 10, 11, 12])
        assert above.head.positions[shard.index] == (new_epoch, 6)
    finally:
        bus.close()


def test_the_lineage_keeps_the_current_chain_and_never_reuses_its_epochs(redis_url):
    bus = make_bus("redis", redis_url)
    try:
        publish(bus, 0, 1)
        epochs = [bus.head().epoch]
        for _ in range(40):  # forty restarts or failovers
            bus.client.set(EPOCH_KEY + ":writer", ANOTHER_PROCESS)
            bus.connecting()
            epochs.append(bus.head().epoch)
        links = bus.client.hgetall(lineage_key(EPOCH_KEY))
        assert len(links) == 32, "the chain of the current epoch, 32 links at most"
        assert len(set(epochs)) == len(epochs)
        # A candidate that names an epoch of the chain gets another name (here: every candidate does).
        class Colliding:  # redis_publish.KeySpace: one Redis' keys, a candidate epoch that is taken
            epoch_key, seq_key = EPOCH_KEY, SEQ_KEY
            history_key, meta_key, live = staticmethod(history_key), staticmethod(meta_key), staticmethod(live_channel)
            new_epoch = staticmethod(lambda: epochs[-3])

        bus._publisher.keys = Colliding()
        bus.client.set(EPOCH_KEY + ":writer", ANOTHER_PROCESS)
        bus.connecting()
        now = bus.head().epoch
        assert now not in epochs[-33:] and now[:-1] == epochs[-3][:-1], "none of the chain's 33 epochs"
    finally:
        bus.close()


def test_without_info_nothing_is_written(redis_url):
    # An ACL user without INFO: the script fails before its first write (no seq, no quota counted).
    from chatgenius.bus.base import Quota
    from chatgenius.bus.redis_publish import PublishScript

    with redis.Redis.from_url(redis_url) as admin:
        admin.execute_command("ACL", "SETUSER", "noinfo", "on", "nopass", "~*", "&*", "+@all", "-info")
        try:
            with redis.Redis.from_url(redis_url, username="noinfo", password="") as limited:
                script = PublishScript(limited, 100, 3600)
                d = draft({"channel": CHAN, "type": "message.created", "data": {"n": 1}}, 1 << 16)
                with pytest.raises(redis.ResponseError, match="^FENCE the Redis user must be allowed INFO"):
                    script.publish([d], [Quota("q:fence", 5, 60)])
            assert admin.get(SEQ_KEY) is None and admin.keys("*q:fence*") == []
        finally:
            admin.execute_command("ACL", "DELUSER", "noinfo")


def test_on_a_cluster_ids_after_a_clean_fence_keep_the_position_of_the_fenced_shard(redis_cluster_nodes):
    # Two shards; shard B changes writer with nothing lost, and only shard A has events after the
    # cursor. The replayed frames' ids must hold B's position (its seq, under the new epoch), not 0:
    # a resume from 0 would replay all of B again, without a reset.
    from chatgenius.shard_cursor import stamp_replay, unpack

    from .test_cluster_contract import make_cluster_bus

    bus = make_cluster_bus(redis_cluster_nodes)
    try:
        a = CHAN
        b = next(f"channel:f{n}" for n in range(1000) if bus.layout.of(f"channel:f{n}").index != bus.layout.of(a).index)
        publish(bus, 0, 3, a)
        publish(bus, 0, 4, b)
        cursor = bus.head([a, b])
        shard_b = bus.layout.of(b)
        bus.client.set(shard_b.epoch_key + ":writer", ANOTHER_PROCESS)
        bus._fence_writers()
        publish(bus, 10, 2, a)
        found = bus.replay([a, b], cursor, 100)
        assert found.reset == [] and numbers(found) == [10, 11]
        new_b = bus.client.get(shard_b.epoch_key).decode()
        assert found.start.positions[shard_b.index] == (new_b, 4)
        frames, _ = stamp_replay(found.start, found.head, [(r.seq, r.frame.split(b"\n", 1)[1]) for r in found.events])
        ids = [f.split(b"\n", 1)[0].decode()[4:] for f in frames]
        assert all(new_b + "4" in i for i in ids), ids  # seq 4 in base 36 is "4"
        resumed = bus.replay([a, b], Vector(found.head.positions), 100)
        assert (resumed.reset, resumed.events) == ([], [])
        assert unpack(found.events[0].seq)[0] == bus.layout.of(a).index
    finally:
        bus.close()


def test_without_info_a_presence_join_announces_nothing_and_stays_unannounced(redis_url):
    # Presence embeds publish.lua: its refusal must not leave the user marked as announced.
    from chatgenius.presence.base import Lease, presence_draft
    from chatgenius.presence.redis import RedisPresence, _with_publish, online_key

    bus = make_bus("redis", redis_url)
    with redis.Redis.from_url(redis_url) as admin:
        admin.execute_command("ACL", "SETUSER", "noinfo", "on", "nopass", "~*", "&*", "+@all", "-info")
        try:
            with redis.Redis.from_url(redis_url, username="noinfo", password="") as limited:
                presence = RedisPresence(bus)
                presence.client, presence._join = limited, limited.register_script(_with_publish("presence_join.lua"))
                before = admin.get(SEQ_KEY)
                with pytest.raises(redis.ResponseError, match="FENCE the Redis user must be allowed INFO"):
                    presence.join([Lease(CHAN, "u1", "c1")], 5, presence_draft)
                assert not admin.sismember(online_key(CHAN), "u1") and admin.get(SEQ_KEY) == before
                presence.client, presence._join = bus.client, bus.client.register_script(_with_publish("presence_join.lua"))
                assert presence.join([Lease(CHAN, "u1", "c1")], 5, presence_draft) == [True], "announced once INFO is allowed"
        finally:
            admin.execute_command("ACL", "DELUSER", "noinfo")
            bus.close()
