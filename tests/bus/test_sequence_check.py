"""The feed's sequence check on (re)connect: a lost tail retires the epoch, a publish answered
while the check's read was in flight does not."""

from __future__ import annotations

import redis

from chatgenius.bus.redis_publish import EPOCH_KEY
from chatgenius.cursor import parse
from chatgenius.events import draft

from .test_contract import make_bus

CHAN = "channel:seqcheck"


def publish(bus, n: int) -> list[str]:
    return bus.publish([draft({"channel": CHAN, "type": "message.created", "data": {"n": i}}, 1 << 16) for i in range(n)])


def stored_epoch(url: str) -> bytes:
    with redis.Redis.from_url(url) as client:
        return client.get(EPOCH_KEY)


def test_a_publish_answered_during_the_check_does_not_retire_the_epoch(redis_url):
    """Both queued on a paused Redis: the read runs first, the publish's answer arrives first."""
    bus = make_bus("redis", redis_url)
    try:
        publish(bus, 3)
        bus.connecting()  # a reconnect after those publishes: the check knows the epoch and seq 3
        before = stored_epoch(redis_url)
        read = bus.client.mget

        def read_then_publish_answered(*keys):
            epoch, current = read(*keys)
            bus._handed_out(epoch, int(current) + 2)  # what the publish's on_seq does meanwhile
            return [epoch, current]

        bus.client.mget = read_then_publish_answered
        bus.connecting()
        assert stored_epoch(redis_url) == before
        assert bus._max_seen == 5, "the seq handed out meanwhile still counts as seen"
    finally:
        bus.close()


def test_a_sequence_that_went_back_retires_the_epoch(redis_url):
    bus = make_bus("redis", redis_url)
    try:
        ids = publish(bus, 3)
        bus.connecting()
        before = stored_epoch(redis_url)
        bus._handed_out(before, 10)  # seqs 4..10 were seen, then lost (a failover to a lagging replica)
        bus.connecting()
        after = stored_epoch(redis_url)
        assert after != before
        found = bus.replay([CHAN], parse(ids[-1]), 10)
        assert found.reset == [CHAN], "old cursors reset instead of skipping the seqs issued again"
    finally:
        bus.close()


def test_on_a_cluster_a_publish_answered_during_the_check_does_not_retire_the_shard(redis_cluster_nodes):
    from .test_cluster_contract import make_cluster_bus

    bus = make_cluster_bus(redis_cluster_nodes)
    try:
        bus.publish([draft({"channel": CHAN, "type": "message.created", "data": {"n": i}}, 1 << 16) for i in range(3)])
        shard = bus.layout.of(CHAN)
        bus._check_sequences()  # a restart of the feed after those publishes
        before = bus.client.get(shard.epoch_key)
        read = bus.client.mget

        def read_then_publish_answered(*keys):
            epoch, current = read(*keys)
            if keys[0] == shard.epoch_key:
                bus._publish.of(CHAN).on_seq(epoch, int(current) + 2)  # what a publish answered meanwhile calls
            return [epoch, current]

        bus.client.mget = read_then_publish_answered
        bus._check_sequences()
        assert bus.client.get(shard.epoch_key) == before
        assert bus._seen[shard.index][1] == 5
    finally:
        bus.close()
