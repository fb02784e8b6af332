"""The key layout of the cluster bus: S shards, each one hash tag, each one slot.

Every key a publish touches (the shard's epoch and sequence, the channels'
history and meta, quota and idempotency keys, the live shard channel) carries
the shard's tag, so lua/publish.lua runs unchanged as one atomic script in one
slot, with SPUBLISH for its live message. Tags are chosen so the S slots are
evenly spaced over the 16384: whatever even split the masters own, shards
spread over all of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import redis
from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

from ..events import Draft
from ..shard_cursor import MAX_SHARDS, new_shard_epoch, shard_of
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
        return key_slot(self.tag.encode())

    @property
    def epoch_key(self) -> str:
        return "cg:epoch:{" + self.tag + "}"

    @property
    def seq_key(self) -> str:
        return "cg:seq:{" + self.tag + "}"

    def history_key(self, channel: str) -> str:
        return "cg:h:{" + self.tag + "}:" + channel

    def meta_key(self, channel: str) -> str:
        return "cg:m:{" + self.tag + "}:" + channel

    def live(self, channel: str) -> str:
        return "cg:l:{" + self.tag + "}:" + channel

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
        return self.shards[shard_of(channel, len(self.shards))]

    def live_name(self, live: bytes) -> tuple[Shard, str]:
        """(shard, channel) of a live shard channel name."""
        text = live.decode()
        tag, _, channel = text[len("cg:l:{") :].partition("}:")
        return self.shards[int(tag[2:].split(".")[0])], channel


def spublish_source() -> str:
    """lua/publish.lua with SPUBLISH: in a cluster the live message is a shard message of the slot."""
    return script_source().replace("redis.call('PUBLISH'", "redis.call('SPUBLISH'")


class ShardPublisher(PublishScript):
    """PublishScript for one shard: its keys, its epoch candidates, its slot for every key."""

    def __init__(self, shard: Shard, client: redis.RedisCluster, script: object, maxlen: int, ttl: int, window: int) -> None:
        self.shard = shard
        super().__init__(client, maxlen, ttl, window, runner=self._run)  # type: ignore[arg-type]
        self._cluster_script = script

    def call_args(self, drafts: Sequence[Draft]) -> tuple[list[str], list[object]]:
        s = self.shard
        keys: list[str] = [s.epoch_key, s.seq_key]
        args: list[object] = [new_shard_epoch(s.index), self.maxlen, self.ttl, self.meta_ttl, len(drafts)]
        for d in drafts:
            keys += [s.history_key(d.channel), s.meta_key(d.channel)]
            args += ["1" if d.durable else "0", s.live(d.channel), d.type, d.body]
        return keys, args

    def _run(self, keys: list[str], args: list[object]) -> object:
        own = 2 + 2 * int(args[4])  # type: ignore[call-overload]
        keys = keys[:own] + [self.shard.tagged(k) for k in keys[own:]]
        return self._cluster_script(keys=keys, args=args)  # type: ignore[operator]
