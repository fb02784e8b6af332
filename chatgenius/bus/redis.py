"""The Redis bus: history in streams, live feed over pub/sub (bus/redis_feed.py: one reader per process).

Publishing is one Lua script (lua/publish.lua): global INCR, XADD with the seq as the entry
id, exact trim with a watermark, EXPIRE, PUBLISH: history and broadcast never disagree. The
live feed is the process' one pub/sub connection (RedisFeed), subscribed only to channels with
local subscribers; this module turns what it reads into runs of frames for the hub, and ends
every local stream with `system.reconnect` when the feed is lost (they may have missed events;
clients resume from history). It replaces flask-sse's connection per client.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

import redis
from gevent.event import Event
from redis.backoff import NoBackoff
from redis.retry import Retry

from ..cursor import Cursor, parse
from ..events import Draft
from ..fanout import Hub, Subscriber
from ..redis_errors import UNAVAILABLE, unavailable
from ..sse import frame_from_live
from .base import BusUnavailable, Published, Quota, Replay
from .redis_feed import BUSY_FANOUT, FeedReplies, RedisFeed, let_io_in
from .redis_history import ancestors, history_from_replies, lineage_key, queue_history_reads, resume_point
from .redis_publish import EPOCH_KEY, LIVE_PREFIX, SEQ_KEY, SINGLE, PublishScript, live_channel, script_source
from .redis_script import Script

log = logging.getLogger(__name__)

_LIVE = LIVE_PREFIX
_LIVE_B = LIVE_PREFIX.encode()
READ_BATCH = 256  # live messages handled per turn of the reader (see RedisBus.handle_arrived)


class RedisBus:
    """See EventBus. `client` serves commands; `feed` is the process' pub/sub connection (its reader
    calls this bus' FeedOwner methods)."""

    def __init__(
        self,
        client: redis.Redis,
        feed: RedisFeed,
        maxlen: int,
        ttl: int,
        reconnect_frame: Callable[[Subscriber], bytes | None],
        subscribe_timeout: float = 5.0,
        idempotency_window: int = 600,
    ) -> None:
        self.hub = Hub(on_first=self._subscribe, on_last=self._unsubscribe)
        self.client = client
        self.feed = feed
        feed.owner = self
        self._reconnect_frame = reconnect_frame
        self._subscribe_timeout = subscribe_timeout
        self.read_batch = READ_BATCH
        # The one publish implementation, shared with the standalone publisher (chatgenius/publisher.py),
        # here over connections of its own (redis_script.py: no pool checks on the hot path).
        self._script = Script(client, script_source())
        self._publisher = PublishScript(client, maxlen, ttl, idempotency_window, runner=self._script)
        self._confirmed: dict[str, Event] = {}

    # -- lifecycle -------------------------------------------------------------------
    def start(self) -> None:
        """See EventBus.start: starts the feed's reader greenlet."""
        self.feed.start()

    def close(self) -> None:
        """See EventBus.close: stops the reader, then releases every connection of the bus."""
        self.feed.close()
        self._script.close()
        self.client.close()
        # make_clients hands each client a pool, which Redis.close() leaves open: release it here
        # (the feed releases its own).
        self.client.connection_pool.disconnect()

    def health(self) -> str | None:
        """See EventBus.health: the live feed's state (not connected, or silent past its PINGs)."""
        return self.feed.health()

    @property
    def reader_reconnects(self) -> int:
        """Times the live feed was lost and reconnected (telemetry)."""
        return self.feed.reconnects

    # -- publishing and history ------------------------------------------------------------
    def publish(self, drafts: Sequence[Draft], quotas: Sequence[Quota] = ()) -> list[str | None]:
        """See EventBus.publish."""
        return self._publisher.publish(drafts, quotas)

    def publish_once(
        self, drafts: Sequence[Draft], scope: str, key: str | None = None, quotas: Sequence[Quota] = (),
    ) -> Published:
        """See EventBus.publish_once."""
        return self._publisher.publish_once(drafts, scope, key, quotas)

    def publish_call(self, drafts: Sequence[Draft]) -> tuple[list[str], list[object]]:
        """KEYS and ARGV of lua/publish.lua for `drafts`, for scripts that publish atomically with a
        state change of their own (presence/redis.py embeds publish.lua as a function)."""
        return self._publisher.call_args(drafts)

    parse_cursor = staticmethod(parse)  # see EventBus.parse_cursor
    def head(self) -> Cursor:
        """See EventBus.head: the first call of a deployment starts its epoch."""
        with unavailable():
            epoch, seq = self.client.mget(EPOCH_KEY, SEQ_KEY)
            if epoch is None:  # the first head of a deployment: the script starts its epoch (and writer), once
                self._publisher.publish_once([], "")
                epoch, seq = self.client.mget(EPOCH_KEY, SEQ_KEY)
        return Cursor(epoch.decode(), int(seq or 0))

    def replay(self, channels: Sequence[str], after: Cursor | None, limit: int) -> Replay:
        """See EventBus.replay: one MULTI round trip for every channel.

        A cursor of the current epoch, or of one it continues (lua/publish.lua's writer fence) at
        or below the seq it kept, resumes exactly. Past what a new writer kept, the cursor names
        events that are gone: every channel is reset, and what follows the fence is replayed (the
        client has the rest). Any other cursor (another lifetime, past the head) predates or
        contradicts what is stored: every channel is reset, and the history is replayed whole.
        """
        if after is None:
            return Replay(head=self.head())
        found, kept = self._read_history(channels, after.seq, limit)
        head = found.head
        if head is None:
            return found
        start, exact = resume_point((after.epoch, after.seq), head.epoch, head.seq, kept)
        if not exact:
            if start != after.seq:
                found, _ = self._read_history(channels, start, limit)
            found.reset = list(channels)
        return found

    def _read_history(self, channels: Sequence[str], after_seq: int, limit: int) -> tuple[Replay, dict[str, int]]:
        with unavailable():
            pipe = self.client.pipeline(transaction=True)
            pipe.mget(EPOCH_KEY, SEQ_KEY)
            pipe.hgetall(lineage_key(EPOCH_KEY))
            queue_history_reads(pipe, SINGLE, channels, after_seq, limit)
            results = pipe.execute()
        epoch_b, seq_b = results[0]
        if epoch_b is None:
            return Replay(reset=list(channels), head=self.head()), {}
        epoch = epoch_b.decode()
        kept = ancestors(epoch, results[1])
        out = history_from_replies(results[2:], channels, epoch, after_seq, limit, position=lambda seq: seq, kept=kept)
        out.head = Cursor(epoch, int(seq_b or 0))
        return out, kept

    # -- the live feed ---------------------------------------------------------------
    def attach(self, sub: Subscriber, channels: Sequence[str]) -> None:
        """See EventBus.attach: waits for Redis to confirm every channel's SUBSCRIBE."""
        self.hub.add(sub, channels)
        deadline = time.monotonic() + self._subscribe_timeout
        for name in channels:
            confirmed = self._confirmed.get(name)
            if confirmed is None or not confirmed.wait(max(0.0, deadline - time.monotonic())):
                self.hub.remove(sub, channels)
                raise BusUnavailable("the live feed did not confirm the subscription")

    def detach(self, sub: Subscriber, channels: Sequence[str] | None = None) -> None:
        """See EventBus.detach: the feed unsubscribes a channel once its last local subscriber left."""
        self.hub.remove(sub, channels)

    def _subscribe(self, channels: list[str]) -> None:
        for name in channels:
            self._confirmed[name] = Event()
        pubsub = self.feed.pubsub
        if pubsub is None:
            return  # attach times out; the reader subscribes everything when it is back
        try:
            pubsub.subscribe(*[live_channel(c) for c in channels])
        except UNAVAILABLE:
            log.warning("subscribe failed; the reader will reconnect")

    def _unsubscribe(self, channels: list[str]) -> None:
        for name in channels:
            self._confirmed.pop(name, None)
        pubsub = self.feed.pubsub
        if pubsub is not None:
            try:
                pubsub.unsubscribe(*[live_channel(c) for c in channels])
            except UNAVAILABLE:
                log.warning("unsubscribe failed; the reader will reconnect")

    # -- FeedOwner: called by the feed's reader (bus/redis_feed.py) --------------------------
    def connecting(self) -> None:
        """Before the feed serves streams: the writer fence (lua/publish.lua with no events). A Redis
        process that did not write the history it holds (a failover, a restart from disk) may lack
        a tail streams were given; the fence starts a new epoch that continues the old one up to
        what it holds, before any stream resumes or any seq is issued again (tests/bus/test_writer_fence.py)."""
        self._publisher.publish_once([], "")

    def connected(self, pubsub: redis.client.PubSub) -> None:
        """Subscribe every channel with local subscribers. No yield between the feed publishing
        `pubsub` and reading the hub: a channel attached before is in `names`, one attached
        after sends its own SUBSCRIBE (_subscribe)."""
        names = self.hub.channels()
        for name in names:
            self._confirmed.setdefault(name, Event())
        if names:
            pubsub.subscribe(*[live_channel(c) for c in names])

    def subscribed(self, channel: bytes) -> None:
        """The feed's hook: Redis confirmed a live channel, so the attach waiting on it may return."""
        if channel.startswith(_LIVE_B):
            event = self._confirmed.get(channel[len(_LIVE):].decode())
            if event is not None:
                event.set()

    def lost(self) -> None:
        """End every local stream: they may have missed events."""
        for event in self._confirmed.values():
            event.clear()
        self.hub.end_all("bus_lost", self._reconnect_frame)

    def handle_arrived(self, pubsub: redis.client.PubSub, replies: FeedReplies, msg: list | None) -> int:
        """Handle `msg` and every message already received behind it, joining runs of one channel.

        Only what has been read already is taken (no further read), so nothing
        waits for a batch; when the reader is behind, a stream gets a run of events in one
        write instead of one write per event (Hub.dispatch_run). At most
        READ_BATCH messages before other greenlets get a turn. Returns the largest
        number of local streams one of them went to.
        """
        fanout = 0
        run_channel = b""  # the feed channel of `run`, and its name (decoded once per run)
        run_name = ""
        run: list[tuple[int, bytes]] = []
        handled = 0
        while msg is not None:
            channel = msg[1] if len(msg) == 3 else b""
            if msg[0] == b"message" and channel.startswith(_LIVE_B):
                _, seq, frame = frame_from_live(msg[2])
                if channel != run_channel:
                    if run:
                        fanout = max(fanout, self.hub.dispatch_run(run_name, run))
                        run = []
                    run_channel, run_name = channel, channel[len(_LIVE):].decode()
                run.append((seq, frame))
            else:
                if run:
                    fanout = max(fanout, self.hub.dispatch_run(run_name, run))
                    run = []
                self.feed.handle(pubsub, msg)  # confirmations, control, PONG: rare
            handled += 1
            # Only what has arrived: stop at a full batch (a message read now must be handled
            # now) or when no whole reply is read yet (one still arriving is finished by the
            # feed's next wait: FeedReplies keeps what arrived).
            if handled == self.read_batch:
                break
            msg = replies.next(0)
            if msg is not None and run and self.hub.count(run_name) >= BUSY_FANOUT:
                # A backlog on a channel many local streams hold: give this worker's publishes a
                # turn while the run grows (one write per stream for all of it). Without it a
                # fan-out under load starved them (docs/PERFORMANCE.md, "Cost per event").
                let_io_in()
        if run:
            fanout = max(fanout, self.hub.dispatch_run(run_name, run))
        return fanout


def make_clients(url: str | None, sentinels: Sequence[tuple[str, int]], master: str) -> tuple[redis.Redis, redis.Redis]:
    """The command client (bounded pool, retries) and the feed client (no retries: see module doc)."""
    common = dict(socket_connect_timeout=3, socket_keepalive=True, health_check_interval=0)
    if sentinels:
        sentinel = redis.Sentinel(list(sentinels), socket_timeout=3)
        client = sentinel.master_for(master, socket_timeout=10, **common)
        feed = sentinel.master_for(master, socket_timeout=None, retry=Retry(NoBackoff(), 0), **common)
        return client, feed
    assert url is not None
    if url.startswith("unix://"):
        del common["socket_keepalive"]  # a TCP option: redis-py's unix connection refuses the argument
    pool = redis.BlockingConnectionPool.from_url(url, max_connections=32, timeout=5, socket_timeout=10, **common)
    client = redis.Redis(connection_pool=pool)
    feed = redis.Redis.from_url(url, socket_timeout=None, retry=Retry(NoBackoff(), 0), **common)
    return client, feed
