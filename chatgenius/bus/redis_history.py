"""Reading channel history from Redis: the commands a replay queues per channel, and what their replies mean.

Shared by RedisBus (one Redis, one MULTI) and RedisClusterBus (one MULTI per shard), so both
decide the same way when a channel is reset instead of replayed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from ..events import ID_HEAD
from .base import Record, Replay

if TYPE_CHECKING:
    from redis.client import Pipeline
    from redis.cluster import ClusterPipeline

    from .cluster_shards import Shard
    from .redis_publish import Keys


def queue_history_reads(
    pipe: Pipeline | ClusterPipeline, keys: Keys | Shard, channels: Sequence[str], after_seq: int, limit: int,
) -> None:
    """Queue three commands per channel: its entries after `after_seq` (one more than `limit`, to
    see an overflow), its trim watermark and last seq, and whether its stream still exists."""
    for name in channels:
        pipe.xrange(keys.history_key(name), min=str(after_seq + 1), max="+", count=limit + 1)
        pipe.hmget(keys.meta_key(name), "trimmed", "last")
        pipe.exists(keys.history_key(name))


def history_from_replies(
    replies: Sequence, channels: Sequence[str], epoch: str, after_seq: int, limit: int, position: Callable[[int], int],
) -> Replay:
    """The replay of `channels` from their replies (as queue_history_reads queued them), in seq order.

    A channel that lost events after `after_seq` (trimmed, or its stream expired) or has more than
    `limit` of them is reset instead. Entries written under a retired epoch are skipped; `position`
    turns an entry's seq into its Record seq (the seq itself, or a cluster shard's packed one).
    """
    out = Replay()
    prefix = f"{ID_HEAD}{epoch}-"
    for i, name in enumerate(channels):
        entries, (trimmed, last), exists = replies[3 * i : 3 * i + 3]
        lost = int(trimmed or 0) > after_seq or (not exists and int(last or 0) > after_seq)
        if lost or len(entries) > limit:
            out.reset.append(name)
            continue
        for entry_id, raw in entries:
            fields = raw if isinstance(raw, dict) else dict(zip(raw[::2], raw[1::2], strict=True))  # a cluster MULTI reply is raw
            envelope = fields[b"e"].decode()
            if envelope.startswith(prefix):  # else written under an epoch since retired
                seq = int(entry_id.split(b"-", 1)[0])
                out.events.append(Record(position(seq), f"{epoch}-{seq}", fields[b"t"].decode(), envelope))
    out.events.sort(key=lambda r: r.seq)
    return out
