"""The cluster bus' live feed: one sharded pub/sub connection per master node, one greenlet each.

A mixin of RedisClusterBus (redis_cluster.py), kept apart because it is the one
part with its own failure rules: any sign that a subscription moved or broke (a
lost connection, a MOVED or other error reply, a SUNSUBSCRIBE we did not ask
for) ends the whole feed, so every local stream reconnects and resumes from its
cursor, and the supervisor resubscribes on a fresh slot map. Before it does, it
runs every shard's writer fence (lua/publish.lua with no events): a shard whose
master is another process now (a failover, a restart) gets a new epoch that
continues the old one up to what the new master holds, so cursors into a lost
tail reset that shard's channels instead of skipping what is reissued.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable
from typing import TYPE_CHECKING

import gevent
import redis
from gevent.event import Event
from gevent.lock import Semaphore
from redis.crc import key_slot

from ..redis_errors import UNAVAILABLE as _ERRORS
from ..shard_cursor import pack
from ..sse import body_from_live
from .base import BusUnavailable
from .cluster_node_feed import NodeFeed
from .cluster_shards import Shard
from .redis import RedisBus
from .redis_feed import FeedReplies, let_io_in, serve_until_stopped

if TYPE_CHECKING:
    from .redis_cluster import RedisClusterBus

log = logging.getLogger(__name__)
HEALTH_CHECK = 2  # seconds: an idle feed connection is PINGed this often


class ClusterFeed:
    """attach/detach, routed channels and the reader greenlets of RedisClusterBus."""

    # The contract's attach/detach are the single-Redis bus' own: they only wait for confirmations.
    attach = RedisBus.attach
    detach = RedisBus.detach

    def route(self: RedisClusterBus, channel: bytes, handler: Callable[[bytes], None]) -> None:
        """Hand every message on the shard channel `channel` to `handler` (in a reader: never block);
        subscribed on every (re)start of the feed (control/redis_cluster.py: the control channel)."""
        self._routes[channel] = handler
        if self._serving:
            self._lost.set()  # restart the feed: it subscribes routes first

    def _run(self: RedisClusterBus) -> None:
        serve_until_stopped(self._serve, self._drop_feeds, lambda: self._stopping, self._retrying, "cluster bus feed", 2.0)

    def _retrying(self: RedisClusterBus) -> None:
        self.reader_reconnects += 1

    def _serve(self: RedisClusterBus) -> None:
        if self.reader_reconnects:
            self.client.nodes_manager.initialize()  # after a loss, a fresh slot map: who owns each shard now
        self._lost.clear()
        self._fence_writers()
        for channel in self._routes:  # before the bus' own: health() waits for them
            self._send(self.client.nodes_manager.get_node_from_slot(key_slot(channel)), "SSUBSCRIBE", channel)
        # No yield between going live and reading the hub: a channel attached before this point is
        # in `names`, one attached after subscribes itself (_subscribe).
        self._serving = True
        names = self.hub.channels()
        for name in names:
            self._confirmed.setdefault(name, Event())
        self._subscribe(names)
        self._lost.wait()
        raise redis.ConnectionError("a shard subscription moved or broke")

    def _send(self: RedisClusterBus, node: redis.cluster.ClusterNode, command: str, *lives: bytes | str) -> None:
        """SSUBSCRIBE or SUNSUBSCRIBE live channels (of one slot) on `node`'s feed, made on first need.

        One send at a time per node (a burst of first attaches cannot open a second
        connection that nobody reads), and what is sent is decided under that lock:
        SSUBSCRIBE only channels still wanted, SUNSUBSCRIBE only those not wanted
        again, so a late send cannot undo a later wish (tests/bus/test_cluster_feed_races.py).
        Nothing is sent once the feed is lost: the supervisor subscribes everything anew.
        """
        lock = self._node_locks.setdefault(node.name, Semaphore())
        with lock:
            if self._lost.is_set():
                return
            feed = self._feeds.get(node.name)
            if feed is None:
                if command != "SSUBSCRIBE":
                    return  # nothing subscribed there
                # A master this process did not hear yet (a failover it had no feed on, say): its
                # writer fence first, so a stream's replay and head that follow read the new epoch.
                # `lives` are of one slot (_send_by_shard): one shard, one fence.
                first = lives[0].encode() if isinstance(lives[0], str) else lives[0]
                if first not in self._routes:
                    self._publish.shards[self.layout.live_name(first)[0].index].publish_once([], "")
                feed = NodeFeed(node.host, node.port, lock)
                feed.connect()
                if self._lost.is_set():
                    feed.close()  # the feed was dropped while this connected: not one of the live ones
                    return
                self._feeds[node.name] = feed
                self._readers.append(gevent.spawn(self._read_node, feed))
            subscribing = command == "SSUBSCRIBE"
            keys = [c.encode() if isinstance(c, str) else c for c in lives]
            keys = [k for k in keys if self._wanted(k) == subscribing]
            if not keys:
                return
            if not subscribing:
                for key in keys:  # our own: its answer is no sign of a moved slot (_handle)
                    self._unsubscribing[key] = self._unsubscribing.get(key, 0) + 1
            try:
                feed.send(command, *keys)
            except BaseException:
                self._lost.set()
                raise

    def _wanted(self: RedisClusterBus, live: bytes) -> bool:
        return live in self._routes or self.layout.live_name(live)[1] in self._confirmed

    def _read_node(self: RedisClusterBus, feed: NodeFeed) -> None:
        """Read one node's feed; a PING unanswered for two intervals counts as lost (a hung master)."""
        last_rx, pinged = time.monotonic(), False
        replies = FeedReplies(feed.conn)
        try:
            while not self._lost.is_set():
                if not feed.open:  # else a read would reconnect it
                    raise redis.ConnectionError("the cluster feed connection is closed")
                msg = replies.next(HEALTH_CHECK)
                if msg is None:
                    if pinged and time.monotonic() - last_rx > 2 * HEALTH_CHECK:
                        raise redis.TimeoutError("no answer to PING on a cluster feed")
                    if self._lost.is_set():
                        break
                    with feed.lock:  # one writer on the socket at a time
                        feed.send("PING")
                    pinged = True
                    continue
                last_rx, pinged = time.monotonic(), False
                if not self._handle(msg):
                    break
                let_io_in()  # the worker's other greenlets (other masters' readers too) get a turn
        except _ERRORS as exc:
            log.warning("cluster bus feed connection lost: %s", exc)
        except redis.ResponseError as exc:  # MOVED, CROSSSLOT...: the slot map we subscribed by is stale
            log.warning("cluster bus feed refused: %s", exc)
        except Exception:  # a bug must not leave the process deaf
            log.exception("cluster bus feed reader failed")
        finally:
            replies.close()
            self._lost.set()  # also when killed: the supervisor restarts the feed

    def _handle(self: RedisClusterBus, msg: list) -> bool:
        """Dispatch one reply as Redis sent it; False when the subscription can no longer be trusted."""
        kind = msg[0]
        channel = msg[1] if len(msg) > 1 else b""
        routed = channel in self._routes
        if kind == b"smessage":
            if routed:
                self._routes[channel](msg[2])
                return True
            shard, name = self.layout.live_name(channel)
            _, seq, frame = body_from_live(msg[2])
            self.hub.dispatch(name, pack(shard.index, seq), frame)
        elif kind == b"ssubscribe" and not routed:
            event = self._confirmed.get(self.layout.live_name(channel)[1])
            if event is not None:
                event.set()
        elif kind == b"sunsubscribe":
            pending = self._unsubscribing.get(channel, 0)
            if pending:  # the answer to our own SUNSUBSCRIBE, even if the channel was wanted again since
                if pending == 1:
                    del self._unsubscribing[channel]
                else:
                    self._unsubscribing[channel] = pending - 1
                return True
            name = None if routed else self.layout.live_name(channel)[1]
            if name is None or name in self._confirmed:
                log.warning("redis dropped the subscription of %r (slot moved)", channel)
                return False
        return True

    def _subscribe(self: RedisClusterBus, channels: list[str]) -> None:
        for name in channels:
            self._confirmed.setdefault(name, Event())
        self._send_by_shard("SSUBSCRIBE", channels)

    def _unsubscribe(self: RedisClusterBus, channels: list[str]) -> None:
        for name in channels:
            self._confirmed.pop(name, None)
        self._send_by_shard("SUNSUBSCRIBE", channels)

    def _send_by_shard(self: RedisClusterBus, command: str, channels: list[str]) -> None:
        """One `command` per shard (it takes channels of one slot); a failure restarts the feed."""
        if not self._serving:
            return  # attach times out; the supervisor subscribes everything when the feed is back
        by_shard: dict[Shard, list[str]] = defaultdict(list)
        for name in channels:
            shard = self.layout.of(name)
            by_shard[shard].append(shard.live(name))
        try:
            for shard, lives in by_shard.items():
                self._send(self.client.nodes_manager.get_node_from_slot(shard.slot), command, *lives)
        except (*_ERRORS, BusUnavailable) as exc:  # BusUnavailable: a writer fence's script call
            log.warning("%s failed (%s); the feed restarts", command.lower(), exc)
            self._lost.set()

    def _fence_writers(self: RedisClusterBus) -> None:
        """Run every shard's writer fence (lua/publish.lua with no events) before serving streams: a
        master that did not write the history it holds (a promoted replica) starts a new epoch
        continuing the old one up to what it holds (RedisBus.connecting; tests/bus/test_writer_fence.py)."""
        for publisher in self._publish.shards:
            publisher.publish_once([], "")

    def _drop_feeds(self: RedisClusterBus) -> None:
        """Close every feed connection and end every local stream: they may have missed events."""
        had_feed = self._serving
        self._serving = False
        self._lost.set()  # no send from here on; a send connecting now closes what it made
        readers, self._readers = self._readers, []
        feeds, self._feeds = self._feeds, {}
        self._unsubscribing.clear()
        for feed in feeds.values():  # before any yield: a kill (close()) may end this call at the next one
            feed.close()
        gevent.killall([r for r in readers if r is not gevent.getcurrent()], block=True, timeout=2)
        for event in self._confirmed.values():
            event.clear()
        if had_feed:
            self.hub.end_all("bus_lost", self._reconnect_frame)
