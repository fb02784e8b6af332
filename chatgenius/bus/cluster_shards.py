"""The key layout of the cluster bus: S shards, each one hash tag, each one slot.

Every key a publish touches (the shard's epoch and sequence, the channels'
history and meta, quota and idempotency keys, the live shard channel) carries
the shard's tag, so lua/publish.lua runs unchanged as one atomic script in one
slot, with SPUBLISH for its live message. Tags are chosen so the S slots are
evenly spaced over the 16384: whatever even split the masters own, shards
spread over all of them.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import redis
from redis.cluster import ClusterNode
from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot
from redis.exceptions import SlotNotCoveredError

from ..events import Draft
from ..shard_cursor import MAX_SHARDS, new_shard_epoch, shard_of
from .base import BusUnavailable, Published, Quota
from .redis_publish import PublishScript, script_source


def _tag_for(shard: int, shards: int) -> str:
    """The first `cg<shard>.<n>` whose slot falls in the shard's 1/S of the slot space."""
    lo = shard * REDIS_CLUSTER_HASH_SLOTS // shards
    hi = (shard + 1) * REDIS_CLUSTER_HASH_SLOTS // shards
    n = 0
    while not lo <= key_slot(f"cg{shard}.{n}".encode()) < hi:
        n += 1
    return f"cg{shard}.{n}"


@dataclass(frozen=True)
class Shard:
    """One shard's keys (all under `{tag}`) and its slot."""

    index: int
    tag: str

    @cached_property
    def slot(self) -> int:
        """The one cluster slot of every key of this shard."""
        return key_slot(self.tag.encode())

    @property
    def epoch_key(self) -> str:
        """The shard's epoch (redis_publish.Keys.epoch_key)."""
        return "cg:epoch:{" + self.tag + "}"

    @property
    def seq_key(self) -> str:
        """The shard's sequence."""
        return "cg:seq:{" + self.tag + "}"

    def history_key(self, channel: str) -> str:
        """A channel's history stream, in this shard's slot."""
        return "cg:h:{" + self.tag + "}:" + channel

    def meta_key(self, channel: str) -> str:
        """A channel's trim watermark hash, in this shard's slot."""
        return "cg:m:{" + self.tag + "}:" + channel

    def live(self, channel: str) -> str:
        """A channel's live shard channel (SPUBLISH, SSUBSCRIBE)."""
        return "cg:l:{" + self.tag + "}:" + channel

    def new_epoch(self) -> str:
        """A candidate epoch naming this shard (shard_cursor.new_shard_epoch)."""
        return new_shard_epoch(self.index)

    def tagged(self, key: str) -> str:
        """A key of the script's optional part (quota, idempotency) moved into this shard's slot."""
        return "{" + self.tag + "}" + key


class Layout:
    """Channel -> shard, fixed by the shard count chosen at deployment (REDIS_CLUSTER_SHARDS)."""

    def __init__(self, shards: int) -> None:
        if not 1 <= shards <= MAX_SHARDS:
            raise ValueError(f"REDIS_CLUSTER_SHARDS must be 1..{MAX_SHARDS} (the cursor's size bound)")
        self.shards = [Shard(k, _tag_for(k, shards)) for k in range(shards)]
        self.control = "cg:ctl:{" + self.shards[0].tag + "}"

    def __len__(self) -> int:
        return len(self.shards)

    def of(self, channel: str) -> Shard:
        """The shard of `channel`."""
        return self.shards[shard_of(channel, len(self.shards))]

    def live_name(self, live: bytes) -> tuple[Shard, str]:
        """(shard, channel) of a live shard channel name."""
        text = live.decode()
        tag, _, channel = text[len("cg:l:{") :].partition("}:")
        return self.shards[int(tag[2:].split(".")[0])], channel


def make_cluster_client(nodes: Sequence[tuple[str, int]]) -> redis.RedisCluster:
    """The cluster client of the bus and of chatgenius.publisher; REDIS_CLUSTER_NODES are only where it starts looking. Each node's pool
    blocks (up to 5 s) when full, as on one Redis: redis-py's default pool refuses the 101st
    concurrent command to a node, which a burst of stream opens reaches."""
    (host, port), *rest = nodes
    return redis.RedisCluster(
        # a url: the only way redis-py builds each node's pool with connection_pool_class
        url=f"redis://{host}:{port}/0", startup_nodes=[ClusterNode(h, p) for h, p in rest],
        socket_connect_timeout=3, socket_timeout=10, socket_keepalive=True, max_connections=32,
        connection_pool_class=functools.partial(redis.BlockingConnectionPool, timeout=5),
    )  # fmt: skip


def spublish_source() -> str:
    """lua/publish.lua with SPUBLISH: in a cluster the live message is a shard message of the slot."""
    return script_source().replace("redis.call('PUBLISH'", "redis.call('SPUBLISH'")


class ShardPublisher(PublishScript):
    """PublishScript (the one publish call) on one shard: its keys, its epochs, every key in its slot."""

    def __init__(self, shard: Shard, client: redis.RedisCluster, script: object, maxlen: int, ttl: int, window: int) -> None:
        self.shard = shard
        super().__init__(client, maxlen, ttl, window, runner=self._run, keys=shard)  # type: ignore[arg-type]
        self._cluster_script = script

    def _run(self, keys: list[str], args: list[object]) -> object:
        own = 2 + 2 * int(args[4])  # type: ignore[call-overload]
        keys = keys[:own] + [self.shard.tagged(k) for k in keys[own:]]  # quota and idempotency keys
        try:
            return self._cluster_script(keys=keys, args=args)  # type: ignore[operator]
        except SlotNotCoveredError as exc:  # not a RedisError: translate it here
            raise BusUnavailable(f"redis unavailable: {exc}") from exc


class ShardedPublish:
    """Publishing on a cluster (RedisClusterBus, and chatgenius.publisher without gevent): one
    ShardPublisher per shard of `layout`, all running the one registered script."""

    def __init__(self, layout: Layout, client: redis.RedisCluster, maxlen: int, ttl: int, window: int) -> None:
        script = client.register_script(spublish_source())
        self.layout = layout
        self.shards = [ShardPublisher(s, client, script, maxlen, ttl, window) for s in layout.shards]

    def of(self, channel: str) -> ShardPublisher:
        """The publisher of `channel`'s shard."""
        return self.shards[self.layout.of(channel).index]

    def publish_once(
        self, drafts: Sequence[Draft], scope: str, key: str | None = None, quotas: Sequence[Quota] = (),
    ) -> Published:
        """See EventBus.publish_once. One shard: one atomic script. A batch over several shards is
        one script per shard, in shard order; quotas and the request's key go with the first."""
        groups: dict[int, list[int]] = defaultdict(list)
        for i, d in enumerate(drafts):
            groups[self.layout.of(d.channel).index].append(i)
        ids: list[str | None] = [None] * len(drafts)
        repeats: set[int] = set()
        replayed = False
        for n, (shard, positions) in enumerate(sorted(groups.items())):
            part = [drafts[i] for i in positions]
            done = self.shards[shard].publish_once(part, scope, key if n == 0 else None, quotas if n == 0 else ())
            if done.replayed and len(groups) == 1:
                return done
            replayed = replayed or done.replayed
            for j, i in enumerate(positions):
                ids[i] = done.ids[j]
                if j in done.repeats:
                    repeats.add(i)
        return Published(ids, replayed=replayed, repeats=frozenset(repeats))
