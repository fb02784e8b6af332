"""Reading channel history from Redis: the commands a replay queues per channel, and what their replies mean.

Shared by RedisBus (one Redis, one MULTI) and RedisClusterBus (one MULTI per shard), so both
decide the same way when a channel is reset instead of replayed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

from ..events import ID_HEAD
from .base import Record, Replay

if TYPE_CHECKING:
    from redis.client import Pipeline
    from redis.cluster import ClusterPipeline

    from .cluster_shards import Shard
    from .redis_publish import Keys


def lineage_key(epoch_key: str) -> str:
    """The hash in which lua/publish.lua's writer fence records what each new epoch continues (epoch_key's slot)."""
    return epoch_key + ":lineage"


def ancestors(epoch: str, links: Mapping[bytes, bytes]) -> dict[str, int]:
    """The epochs `epoch` continues, each with the last seq of it that it kept (its fence).

    `links` is the lineage hash (new epoch -> '<parent> <fence>'). A cursor of an ancestor at or
    below its fence is a position in the current history; above it, it names events that were lost.
    """
    out: dict[str, int] = {}
    link = links.get(epoch.encode())
    while link is not None and len(out) < len(links):
        parent, _, fence = link.decode().partition(" ")
        if parent == epoch or parent in out or not fence.isdigit():  # a link that does not parse ends the chain
            break
        out[parent] = int(fence)
        link = links.get(parent.encode())
    return out


def resume_point(held: tuple[str, int] | None, epoch: str, head: int, kept: Mapping[str, int]) -> tuple[int, bool]:
    """Where the replay of a cursor at `held` (epoch, seq) starts, and whether exactly (no reset).

    Exact: a position of the current `epoch` up to its `head`, or of an epoch it continues (`kept`:
    ancestors()) up to that epoch's fence. Past a fence the cursor named events that are gone: a
    reset, from the fence (the client has the rest). Anything else (no position, another
    lifetime, past the head): a reset, from 0. Both buses decide with this.
    """
    if held is None:
        return 0, False
    held_epoch, seq = held
    if seq <= head and (held_epoch == epoch or seq <= kept.get(held_epoch, -1)):
        return seq, True
    return (kept.get(held_epoch, 0) if held_epoch != epoch else 0), False


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
    kept: Mapping[str, int] | None = None,
) -> Replay:
    """The replay of `channels` from their replies (as queue_history_reads queued them), in seq order.

    A channel that lost events after `after_seq` (trimmed, or its stream expired) or has more than
    `limit` of them is reset instead. Entries are kept when written under `epoch` or under one of
    the epochs it continues (`kept`: ancestors()), each with the id it was published with; others
    (another lifetime: an epoch key that was wiped) are skipped.
    `position` turns an entry's seq into its Record seq (the seq itself, or a cluster shard's packed one).
    """
    out = Replay()
    heads = [(f"{ID_HEAD}{e}-", e) for e in (epoch, *(kept or ()))]
    for i, name in enumerate(channels):
        entries, (trimmed, last), exists = replies[3 * i : 3 * i + 3]
        lost = int(trimmed or 0) > after_seq or (not exists and int(last or 0) > after_seq)
        if lost or len(entries) > limit:
            out.reset.append(name)
            continue
        for entry_id, raw in entries:
            fields = raw if isinstance(raw, dict) else dict(zip(raw[::2], raw[1::2], strict=True))  # a cluster MULTI reply is raw
            envelope = fields[b"e"].decode()
            written = next((e for head, e in heads if envelope.startswith(head)), None)
            if written is not None:  # else written in another lifetime (a wiped epoch key)
                seq = int(entry_id.split(b"-", 1)[0])
                out.events.append(Record(position(seq), f"{written}-{seq}", fields[b"t"].decode(), envelope))
    out.events.sort(key=lambda r: r.seq)
    return out
