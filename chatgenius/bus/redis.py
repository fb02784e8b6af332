"""The Redis bus: history in streams, live feed over pub/sub, one reader per process.

Publishing is one Lua script (lua/publish.lua): global INCR, XADD with the seq as
the entry id, exact trim with a watermark, EXPIRE, PUBLISH — so history and
broadcast never disagree. Each process holds O(1) Redis connections whatever
its number of streams: one pub/sub connection, read by one greenlet, subscribed
only to channels with local subscribers, plus a small bounded command pool.
flask-sse's one-connection-per-client design is what this replaces.

The reader never reconnects silently (redis-py retries are off for it): a lost
feed means events may have been missed, so every local stream is ended with
`system.reconnect` and clients resume from history (python-socketio #1581 is
the deaf-listener failure this avoids). A PING every few seconds proves the
connection is alive.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from importlib import resources

import gevent
import redis
from gevent.event import Event
from redis.backoff import NoBackoff
from redis.retry import Retry

from ..cursor import Cursor, new_epoch
from ..events import Draft
from ..fanout import Hub, Subscriber
from .base import BusUnavailable, Published, Quota, Record, Replay
from .redis_errors import UNAVAILABLE as _ERRORS  # the one list every store uses
from .redis_publish import EPOCH_KEY, LIVE_PREFIX, SEQ_KEY, PublishScript, history_key, live_channel, meta_key, script_source
from .redis_script import Script

log = logging.getLogger(__name__)

CONTROL = b"cg:ctl"
_LIVE = LIVE_PREFIX
READ_BATCH = 256  # live messages handled per turn of the reader (see RedisBus._drain)
BUSY_FANOUT = 64  # after a fan-out to at least this many streams the reader yields once (see _serve_feed)


def frame_from_live(payload: bytes) -> tuple[bytes, int, bytes]:
    """Turn a live payload into (epoch, seq, SSE frame) without parsing the JSON."""
    cursor, etype, envelope = payload.split(b"\n", 2)
    if not cursor:
        return b"", 0, b"event: " + etype + b"\ndata: " + envelope + b"\n\n"
    epoch, _, seq = cursor.rpartition(b"-")
    return epoch, int(seq), b"id: " + cursor + b"\nevent: " + etype + b"\ndata: " + envelope + b"\n\n"


class RedisBus:
    """See EventBus. `client` serves commands; `feed_client` (retries off) serves the reader."""

    def __init__(
        self,
        client: redis.Redis,
        feed_client: redis.Redis,
        maxlen: int,
        ttl: int,
        reconnect_frame: Callable[[Subscriber], bytes | None],
        ping_interval: float = 5.0,
        subscribe_timeout: float = 5.0,
        idempotency_window: int = 600,
    ) -> None:
        self.hub = Hub(on_first=self._subscribe, on_last=self._unsubscribe)
        self.client = client
        self._feed_client = feed_client
        self._reconnect_frame = reconnect_frame
        self._ping_interval = ping_interval
        self._subscribe_timeout = subscribe_timeout
        self.read_batch = READ_BATCH
        # The one publish implementation, shared with the standalone publisher (chatgenius/publisher.py),
        # here over connections of its own (redis_script.py: no pool checks on the hot path).
        self._script = Script(client, script_source())
        self._publisher = PublishScript(client, maxlen, ttl, idempotency_window, runner=self._script)
        self._publisher.on_seq = self._handed_out
        self._retire = client.register_script(resources.files(__package__).joinpath("lua/retire_epoch.lua").read_text())
        self._pubsub: redis.client.PubSub | None = None
        self._confirmed: dict[str, Event] = {}
        self._reader: gevent.Greenlet | None = None
        self._stopping = False
        self._max_seen = 0
        self._seen_epoch = b""
        self.on_control: Callable[[bytes], None] | None = None
        self.reader_reconnects = 0
        self.last_rx = 0.0
        self.lag = 0.0

    # -- lifecycle -------------------------------------------------------------------
    def start(self) -> None:
        if self._reader is None:
            self._reader = gevent.spawn(self._run)

    def close(self) -> None:
        self._stopping = True
        if self._reader is not None:
            self._reader.kill(block=True, timeout=2)
        self._drop_feed()
        self._script.close()
        self.client.close()
        self.client.connection_pool.disconnect()  # a client given a pool leaves it open on close()

    def health(self) -> str | None:
        if self._pubsub is None:
            return "bus reader not connected"
        if time.monotonic() - self.last_rx > 3 * self._ping_interval + 1:
            return "bus reader silent"
        return None

    # -- publishing and history ------------------------------------------------------------
    def publish(self, drafts: Sequence[Draft], quotas: Sequence[Quota] = ()) -> list[str | None]:
        """See EventBus.publish."""
        return self._publisher.publish(drafts, quotas)

    def publish_once(
        self, drafts: Sequence[Draft], scope: str, key: str | None = None, quotas: Sequence[Quota] = (),
    ) -> Published:
        """See EventBus.publish_once."""
        return self._publisher.publish_once(drafts, scope, key, quotas)

    def _handed_out(self, epoch: bytes, seq: int) -> None:
        if epoch == self._seen_epoch and seq > self._max_seen:
            self._max_seen = seq  # a seq we handed out counts as seen (see _check_sequence)

    def publish_call(self, drafts: Sequence[Draft]) -> tuple[list[str], list[object]]:
        """KEYS and ARGV of lua/publish.lua for `drafts`, for scripts that publish atomically with a
        state change of their own (bus/presence_redis.py embeds publish.lua as a function)."""
        return self._publisher.call_args(drafts)

    def head(self) -> Cursor:
        try:
            epoch, seq = self.client.mget(EPOCH_KEY, SEQ_KEY)
            if epoch is None:
                epoch = self.setnx(EPOCH_KEY, new_epoch()).encode()
        except _ERRORS as exc:
            raise BusUnavailable(f"redis unavailable: {exc}") from exc
        return Cursor(epoch.decode(), int(seq or 0))

    def replay(self, channels: Sequence[str], after: Cursor | None, limit: int) -> Replay:
        """See EventBus.replay: one MULTI round trip for every channel.

        A cursor from another epoch (or past the head) predates everything now
        stored: every channel is reset, and the current epoch is replayed whole.
        """
        if after is None:
            return Replay(head=self.head())
        found = self._read_history(channels, after.seq, limit)
        if found.head is not None and (after.epoch != found.head.epoch or after.seq > found.head.seq):
            found = self._read_history(channels, 0, limit)
            found.reset = list(channels)
        return found

    def _read_history(self, channels: Sequence[str], after_seq: int, limit: int) -> Replay:
        try:
            pipe = self.client.pipeline(transaction=True)
            pipe.mget(EPOCH_KEY, SEQ_KEY)
            for name in channels:
                pipe.xrange(history_key(name), min=str(after_seq + 1), max="+", count=limit + 1)
                pipe.hmget(meta_key(name), "trimmed", "last")
                pipe.exists(history_key(name))
            results = pipe.execute()
        except _ERRORS as exc:
            raise BusUnavailable(f"redis unavailable: {exc}") from exc
        epoch_b, seq_b = results[0]
        if epoch_b is None:
            return Replay(reset=list(channels), head=self.head())
        epoch = epoch_b.decode()
        out = Replay(head=Cursor(epoch, int(seq_b or 0)))
        prefix = f'{{"id":"{epoch}-'
        for i, name in enumerate(channels):
            entries, (trimmed, last), exists = results[1 + 3 * i : 4 + 3 * i]
            lost = int(trimmed or 0) > after_seq or (not exists and int(last or 0) > after_seq)
            if lost or len(entries) > limit:
                out.reset.append(name)
                continue
            for entry_id, fields in entries:
                envelope = fields[b"e"].decode()
                if not envelope.startswith(prefix):
                    continue  # written under an epoch that was since retired
                seq = int(entry_id.split(b"-", 1)[0])
                out.events.append(Record(seq, f"{epoch}-{seq}", fields[b"t"].decode(), envelope))
        out.events.sort(key=lambda r: r.seq)
        return out

    def setnx(self, key: str, value: str) -> str:
        try:
            self.client.set(key, value, nx=True)
            stored = self.client.get(key)
        except _ERRORS as exc:
            raise BusUnavailable(f"redis unavailable: {exc}") from exc
        return stored.decode() if stored is not None else value

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
        self.hub.remove(sub, channels)

    def _subscribe(self, channels: list[str]) -> None:
        for name in channels:
            self._confirmed[name] = Event()
        pubsub = self._pubsub
        if pubsub is None:
            return  # attach times out; the reader subscribes everything when it is back
        try:
            pubsub.subscribe(*[live_channel(c) for c in channels])
        except _ERRORS:
            log.warning("subscribe failed; the reader will reconnect")

    def _unsubscribe(self, channels: list[str]) -> None:
        for name in channels:
            self._confirmed.pop(name, None)
        pubsub = self._pubsub
        if pubsub is not None:
            try:
                pubsub.unsubscribe(*[live_channel(c) for c in channels])
            except _ERRORS:
                log.warning("unsubscribe failed; the reader will reconnect")

    def _run(self) -> None:
        backoff = 0.1
        while not self._stopping:
            try:
                self._serve_feed()
            except _ERRORS as exc:
                log.warning("bus reader lost redis: %s", exc)
            except gevent.GreenletExit:
                return
            except Exception:  # a bug must not leave the process deaf forever
                log.exception("bus reader failed")
            self._drop_feed()
            if self._stopping:
                return
            self.reader_reconnects += 1
            gevent.sleep(backoff)
            backoff = min(backoff * 2, 5.0)
        return

    def _serve_feed(self) -> None:
        pubsub = self._feed_client.pubsub()
        try:
            self._check_sequence()
            pubsub.subscribe(CONTROL)  # connects (and yields); channels come after, see below
            # No yield between publishing the feed and reading the hub: a channel attached
            # before this point is in `names`, one attached after sends its own SUBSCRIBE.
            self._pubsub = pubsub
            names = self.hub.channels()
            for name in names:
                self._confirmed.setdefault(name, Event())
            if names:
                pubsub.subscribe(*[live_channel(c) for c in names])
            self.last_rx = time.monotonic()
            pinged = False
            conn = pubsub.connection
            assert conn is not None  # connected by the SUBSCRIBE above
            while not self._stopping:
                msg = _next_reply(conn, self._ping_interval)
                now = time.monotonic()
                if msg is None:
                    if now - self.last_rx > 2 * self._ping_interval and pinged:
                        raise redis.TimeoutError("no answer to PING on the live feed")
                    pubsub.ping()
                    pinged = True
                    continue
                self.last_rx = now
                pinged = False
                if self._drain(pubsub, conn, msg) >= BUSY_FANOUT:
                    # Batching follows the backlog, not a clock: an event goes out as soon as it
                    # is read, and what arrives while a fan-out's writes run is read next, as one
                    # run (one write per stream). After a large fan-out, yield once first: stream
                    # loops with a backlog write it, and what arrives meanwhile joins the next run.
                    gevent.sleep(0)
        finally:
            pubsub.reset()

    def _drain(self, pubsub: redis.client.PubSub, conn: redis.connection.AbstractConnection, msg: list | None) -> int:
        """Handle `msg` and every message already received behind it, joining runs of one channel.

        Only what has arrived is taken (a non-blocking read), so nothing waits for
        a batch; when the reader is behind, a stream gets a run of events in one
        write instead of one write per event (Hub.dispatch_run). At most
        READ_BATCH messages before other greenlets get a turn. Returns the largest
        number of local streams one of them went to.
        """
        fanout = 0
        run_channel = b""
        run: list[tuple[int, bytes]] = []
        handled = 0
        while msg is not None:
            channel = msg[1] if len(msg) == 3 else b""
            if msg[0] == b"message" and channel != CONTROL:
                epoch, seq, frame = frame_from_live(msg[2])
                if seq > self._max_seen or epoch != self._seen_epoch:
                    self._max_seen, self._seen_epoch = seq, epoch
                if channel != run_channel and run:
                    fanout = max(fanout, self.hub.dispatch_run(run_channel[len(_LIVE):].decode(), run))
                    run = []
                run_channel = channel
                run.append((seq, frame))
            else:
                if run:
                    fanout = max(fanout, self.hub.dispatch_run(run_channel[len(_LIVE):].decode(), run))
                    run = []
                self._handle(pubsub.handle_message(msg))  # confirmations, control, PONG: rare
            handled += 1
            # Only what has arrived: stop at a full batch (a message read now must be handled
            # now) or when nothing is there. Once something is there, wait for the whole of
            # it: a read with timeout 0 fails on a message split across TCP segments, and
            # redis-py then resets the connection (a lost feed).
            if handled == self.read_batch:
                break
            msg = _next_reply(conn, 0)
        if run:
            fanout = max(fanout, self.hub.dispatch_run(run_channel[len(_LIVE):].decode(), run))
        return fanout

    def _handle(self, msg: dict | None) -> None:
        if msg is None:
            return
        kind = msg["type"]
        channel: bytes = msg["channel"] if isinstance(msg["channel"], bytes) else b""
        if kind == "message":
            if channel == CONTROL and self.on_control is not None:
                self.on_control(msg["data"])
        elif kind == "subscribe" and channel.startswith(_LIVE.encode()):
            event = self._confirmed.get(channel[len(_LIVE):].decode())
            if event is not None:
                event.set()

    def _check_sequence(self) -> None:
        """A Redis whose sequence went backwards within one epoch lost a tail (a failover to a
        lagging replica, an AOF without fsync): retire that epoch so old cursors reset instead
        of silently skipping the seqs that will be issued again."""
        epoch, current = self.client.mget(EPOCH_KEY, SEQ_KEY)
        if epoch is not None and epoch == self._seen_epoch and int(current or 0) < self._max_seen:
            log.warning("redis sequence went back from %d to %d: retiring epoch", self._max_seen, int(current or 0))
            self._retire(keys=[EPOCH_KEY], args=[epoch, new_epoch()])
        self._max_seen, self._seen_epoch = int(current or 0), epoch or b""

    def _drop_feed(self) -> None:
        """Forget the feed and end every local stream: they may have missed events."""
        had_feed = self._pubsub is not None
        self._pubsub = None
        for event in self._confirmed.values():
            event.clear()
        if had_feed:
            self.hub.end_all("bus_lost", self._reconnect_frame)

    def publish_control(self, payload: bytes) -> int:
        """See EventBus.publish_control: PUBLISH counts the readers (one per process) it reached."""
        try:
            return int(self.client.publish(CONTROL, payload))
        except _ERRORS as exc:
            raise BusUnavailable(f"redis unavailable: {exc}") from exc


def _next_reply(conn: redis.connection.AbstractConnection, timeout: float) -> list | None:
    """The feed's next reply as Redis sent it (`[b"message", channel, payload]`), or None after `timeout` s.

    Why not PubSub.get_message: per message it adds a retry wrapper, a health
    check, a subscription check and a dict, several times the cost of reading a
    reply that is already in the parser's buffer; at chat traffic (few streams
    per event) the reader's share of a publish was mostly that (docs/PERFORMANCE.md).
    Once anything has arrived, the reply is read whole even if it is still
    arriving: a read with timeout 0 fails on a message split across TCP
    segments, and redis-py then resets the connection (a lost feed).
    """
    if not conn.can_read(timeout=timeout):
        return None
    reply = conn.read_response(push_request=True)  # as PubSub reads: pub/sub replies may come as pushes
    if isinstance(reply, bytes):  # a PONG outside subscribed mode
        return [b"pong", reply]
    return reply


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
