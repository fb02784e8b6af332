"""The Redis Cluster bus: per-shard sequences, sharded pub/sub, one reader connection per master.

History and publishing are the single-Redis design per shard (cluster_shards.py:
lua/publish.lua in one slot, SPUBLISH for live). The live feed is one pub/sub
connection per master node that owns a subscribed shard (O(nodes), never
O(streams)), each read by a greenlet, SSUBSCRIBE-ing the shard channels of that
node. Anything that can move a subscription (a connection lost, a MOVED reply,
a SUNSUBSCRIBE the server sends when a slot migrates) ends the feed: local
streams get `system.reconnect` and resume from their cursor, the slot map is
refreshed and every channel subscribed again. Nothing is re-routed silently.

Live frames carry no `id:` line: the id is the stream's position vector
(shard_cursor.Vector), which the stream prepends; the Frame's int is
shard_cursor.pack(shard, seq). The control channel (control/redis_cluster.py)
is a shard channel routed on the same feed. See docs/ARCHITECTURE.md, "Redis Cluster".
"""

from __future__ import annotations

import functools
import logging
from collections import defaultdict
from collections.abc import Callable, Sequence

import gevent
import redis
from gevent.event import Event
from gevent.lock import Semaphore

from ..cursor import Cursor, parse
from ..events import Draft
from ..fanout import Hub, Subscriber
from ..redis_errors import unavailable
from ..shard_cursor import Vector, is_single_redis, pack, parse_vector
from .base import Published, Quota, Replay
from .cluster_feed import ClusterFeed, NodeFeed
from .cluster_shards import Layout, Shard, ShardedPublish
from .redis_history import ancestors, history_from_replies, lineage_key, queue_history_reads, resume_point

log = logging.getLogger(__name__)


class RedisClusterBus(ClusterFeed):
    """See EventBus; cursors are shard_cursor.Vector (replay, head) instead of one Cursor."""

    def __init__(
        self, client: redis.RedisCluster, shards: int, maxlen: int, ttl: int,
        reconnect_frame: Callable[[Subscriber], bytes | None], subscribe_timeout: float = 5.0,
        idempotency_window: int = 600,
    ) -> None:  # fmt: skip
        self.hub = Hub(on_first=self._subscribe, on_last=self._unsubscribe)
        self.client = client
        self.layout = Layout(shards)
        self._publish = ShardedPublish(self.layout, client, maxlen, ttl, idempotency_window)
        self._reconnect_frame = reconnect_frame
        self._subscribe_timeout = subscribe_timeout
        self._feeds: dict[str, NodeFeed] = {}  # node name -> its feed (cluster_feed.py)
        self._node_locks: dict[str, Semaphore] = {}  # node name -> one send at a time (ClusterFeed._send)
        self._unsubscribing: dict[bytes, int] = {}  # live channel -> our SUNSUBSCRIBEs not yet answered
        self._confirmed: dict[str, Event] = {}
        self._lost = Event()
        self._serving = False
        self._readers: list[gevent.Greenlet] = []
        self._supervisor: gevent.Greenlet | None = None
        self._stopping = False
        self._routes: dict[bytes, Callable[[bytes], None]] = {}  # route(): the control channel
        self.reader_reconnects = 0

    # -- lifecycle -------------------------------------------------------------------
    def start(self) -> None:
        """See EventBus.start: spawns the feed's supervisor (it connects to the masters it needs)."""
        if self._supervisor is None:
            self._supervisor = gevent.spawn(self._run)

    def close(self) -> None:
        """See EventBus.close: stops the feed, then closes the command client's connections to every node."""
        self._stopping = True
        self._lost.set()  # no send from now on, even before a reader exists
        if self._supervisor is not None:
            self._supervisor.kill(block=True, timeout=2)
        self._drop_feeds()
        for node in self.client.get_nodes():  # pools given to the node clients stay open on close()
            if node.redis_connection is not None:
                node.redis_connection.connection_pool.disconnect()
        self.client.close()

    def health(self) -> str | None:
        """See EventBus.health: not ready until the feed is connected to the control channel's master."""
        return None if self._serving else "bus reader not connected"

    # -- publishing and history ------------------------------------------------------------
    def publish(self, drafts: Sequence[Draft], quotas: Sequence[Quota] = ()) -> list[str | None]:
        """See EventBus.publish."""
        return self.publish_once(drafts, "", None, quotas).ids

    def publish_once(
        self,
        drafts: Sequence[Draft],
        scope: str,
        key: str | None = None,
        quotas: Sequence[Quota] = (),
    ) -> Published:
        """See EventBus.publish_once (cluster_shards.ShardedPublish)."""
        return self._publish.publish_once(drafts, scope, key, quotas)

    def publish_call(self, drafts: Sequence[Draft]) -> tuple[list[str], list[object]]:
        """KEYS and ARGV of lua/publish.lua for `drafts` (all of one shard), for scripts that publish
        atomically with a state change of their own (presence/redis_cluster.py)."""
        return self._publish.of(drafts[0].channel).call_args(drafts)

    def parse_cursor(self, raw: str) -> Vector | Cursor:
        """A client's cursor: a vector, or a single-Redis `<epoch>-<seq>` (resumed as a reset); CursorError if neither."""
        return parse(raw) if is_single_redis(raw) else parse_vector(raw, len(self.layout))

    def _shard_heads(self, shards: Sequence[Shard]) -> dict[int, tuple[str, int]]:
        heads = {}
        with unavailable():
            for s in shards:
                epoch, seq = self.client.mget(s.epoch_key, s.seq_key)
                if epoch is None:  # the script starts the shard's epoch (and writer), once
                    self._publish.shards[s.index].publish_once([], "")
                    epoch, seq = self.client.mget(s.epoch_key, s.seq_key)
                heads[s.index] = (epoch.decode(), int(seq or 0))
        return heads

    def head(self, channels: Sequence[str] | None = None) -> Vector:
        """Positions of the shards of `channels` (default: every shard)."""
        shards = self.layout.shards if channels is None else sorted({self.layout.of(c) for c in channels}, key=lambda s: s.index)
        return Vector(self._shard_heads(shards))

    def replay(self, channels: Sequence[str], after: Vector | Cursor | None, limit: int) -> Replay:
        """See EventBus.replay, per shard: a shard whose epoch differs from the cursor's (lost data,
        or a single-Redis Cursor) or that the cursor lacks resets its own channels only and is
        replayed whole; the others resume exactly after their own position. Records' seq is pack()."""
        by_shard: dict[Shard, list[str]] = defaultdict(list)
        for name in channels:
            by_shard[self.layout.of(name)].append(name)
        out = Replay(head=Vector(), start=Vector())
        for shard, names in sorted(by_shard.items(), key=lambda kv: kv[0].index):
            epoch, seq, start, found = self._read_shard(shard, names, after, limit)
            out.head.positions[shard.index] = (epoch, seq)  # type: ignore[union-attr]
            out.start.positions[shard.index] = (epoch, start)  # type: ignore[union-attr]
            out.events += found.events
            out.reset += found.reset
        return out

    def _read_shard(self, shard: Shard, names: list[str], after: Vector | Cursor | None, limit: int) -> tuple[str, int, int, Replay]:
        """One shard's part of replay. The reset decision uses the epoch, head and lineage of the
        same MULTI that read the history, so an epoch replaced meanwhile cannot pass for the cursor's.
        A position of an epoch the current one continues (lua/publish.lua's writer fence), at or
        below the seq it kept, resumes exactly; above it, it named events that are gone: reset, with
        what follows the fence (the client has the rest) (redis_history.resume_point). Returns the
        shard's epoch, head, the seq its events follow, and what was found."""
        if after is None:
            epoch, seq = self._shard_heads([shard])[shard.index]
            return epoch, seq, seq, Replay()
        held = after.positions.get(shard.index) if isinstance(after, Vector) else None  # a Cursor: single Redis
        read_from = held[1] if held else 0
        found, epoch, seq, kept = self._read_history(shard, names, read_from, limit)
        if epoch is None:  # a wiped shard: give it its new epoch now, so the head names a real one
            self._shard_heads([shard])
            found, epoch, seq, kept = self._read_history(shard, names, 0, limit)
            start, exact = 0, False
        else:
            start, exact = resume_point(held, epoch, seq, kept)
            if start != read_from:
                found, epoch, seq, kept = self._read_history(shard, names, start, limit)
        if not exact:
            found.reset = list(names)
        return epoch or "", seq, start, found

    def _read_history(self, shard: Shard, names: list[str], after_seq: int, limit: int) -> tuple[Replay, str | None, int, dict[str, int]]:
        with unavailable():
            pipe = self.client.pipeline(transaction=True)  # one slot: a MULTI on the shard's master
            pipe.get(shard.epoch_key)
            pipe.get(shard.seq_key)
            pipe.hgetall(lineage_key(shard.epoch_key))
            queue_history_reads(pipe, shard, names, after_seq, limit)
            results = pipe.execute()
        epoch_b, seq_b = results[0], results[1]
        if epoch_b is None:
            return Replay(), None, 0, {}
        epoch = epoch_b.decode()
        kept = ancestors(epoch, results[2])
        found = history_from_replies(
            results[3:], names, epoch, after_seq, limit, position=functools.partial(pack, shard.index), kept=kept,
        )  # fmt: skip
        return found, epoch, int(seq_b or 0), kept
