"""The one pub/sub connection of a process, read by one greenlet, shared by every Redis seam.

Each process holds O(1) Redis connections whatever its number of streams: this
one for everything pushed (the bus' live channels, the control channel), plus
the small command pool. The feed owns the connection's life: connect, subscribe
the routed channels (control/redis.py), let its owner (bus/redis.py) subscribe
its own, read replies with a PING every few seconds to prove the connection is
alive, and on a loss tell the owner, back off and reconnect.

It never reconnects silently (redis-py retries are off for its client): a lost
feed means messages may have been missed, so the owner ends every local stream
with `system.reconnect` and clients resume from history (python-socketio #1581
is the deaf-listener failure this avoids).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Protocol

import gevent
import redis
from gevent.hub import get_hub

from ..redis_errors import UNAVAILABLE
from .base import BusUnavailable
from .redis_replies import Replies

log = logging.getLogger("chatgenius.bus.redis")  # the logger name the reader's lines have always had

BUSY_FANOUT = 64  # after a fan-out to at least this many streams the reader yields once (see _serve)


class FeedOwner(Protocol):
    """What the feed's owner (RedisBus) does with the connection; the feed calls these in its greenlet."""

    def connecting(self) -> None:
        """Before each connection (the bus checks its sequence: see RedisBus.connecting)."""

    def connected(self, pubsub: redis.client.PubSub) -> None:
        """The routed channels are subscribed; subscribe the owner's (no yield before reading its state)."""

    def handle_arrived(self, pubsub: redis.client.PubSub, replies: FeedReplies, msg: list) -> int:
        """Handle `msg` and what arrived behind it; hand other replies to RedisFeed.handle. Returns the fan-out."""

    def subscribed(self, channel: bytes) -> None:
        """Redis confirmed the SUBSCRIBE of `channel` (not a routed one)."""

    def lost(self) -> None:
        """The connection is gone (the owner ends its streams: they may have missed messages)."""


class RedisFeed:
    """See the module doc. `client` must have retries off (bus/redis.make_clients)."""

    def __init__(self, client: redis.Redis, ping_interval: float = 5.0) -> None:
        self.client = client
        self.ping_interval = ping_interval
        self.owner: FeedOwner | None = None
        self.pubsub: redis.client.PubSub | None = None
        self.reconnects = 0
        self.last_rx = 0.0
        self._routes: dict[bytes, Callable[[bytes], None]] = {}
        self._reader: gevent.Greenlet | None = None
        self._stopping = False

    def route(self, channel: bytes, handler: Callable[[bytes], None]) -> None:
        """Hand every message on `channel` to `handler` (in the reader: never block), on every connection."""
        self._routes[channel] = handler
        pubsub = self.pubsub
        if pubsub is not None:
            try:
                pubsub.subscribe(channel)
            except UNAVAILABLE:
                log.warning("subscribe failed; the reader will reconnect")

    def handle(self, pubsub: redis.client.PubSub, msg: list) -> None:
        """A reply other than the owner's messages: a routed message, a confirmation, a PONG (rare)."""
        parsed = pubsub.handle_message(msg)
        if parsed is None:
            return
        kind = parsed["type"]
        channel: bytes = parsed["channel"] if isinstance(parsed["channel"], bytes) else b""
        if kind == "message":
            handler = self._routes.get(channel)
            if handler is not None:
                handler(parsed["data"])
        elif kind == "subscribe" and channel not in self._routes and self.owner is not None:
            self.owner.subscribed(channel)

    # -- lifecycle -------------------------------------------------------------------
    def start(self) -> None:
        """Spawn the reader greenlet (once); it connects, subscribes and reconnects by itself."""
        if self._reader is None:
            self._reader = gevent.spawn(self._run)

    def close(self) -> None:
        """Stop the reader and release the pub/sub connection and its pool."""
        self._stopping = True
        if self._reader is not None:
            self._reader.kill(block=True, timeout=2)
        self._drop()
        self.client.connection_pool.disconnect()  # Redis.close() leaves a pool it was handed open

    def health(self) -> str | None:
        """None while the feed is connected and answering PINGs, else why not (for /readyz)."""
        if self.pubsub is None:
            return "bus reader not connected"
        if time.monotonic() - self.last_rx > 3 * self.ping_interval + 1:
            return "bus reader silent"
        return None

    def _run(self) -> None:
        serve_until_stopped(self._serve, self._drop, lambda: self._stopping, self._retrying, "bus reader")

    def _retrying(self) -> None:
        self.reconnects += 1

    def _serve(self) -> None:
        owner = self.owner
        assert owner is not None, "RedisFeed.owner is set by the bus before start"
        pubsub = self.client.pubsub()
        replies: FeedReplies | None = None
        try:
            owner.connecting()
            if self._routes:
                pubsub.subscribe(*self._routes)  # connects (and yields); the owner's channels come after
            else:
                pubsub.ping()  # connects: nothing routed (a bus alone, as in tests)
            self.pubsub = pubsub
            owner.connected(pubsub)
            self.last_rx = time.monotonic()
            pinged = False
            conn = pubsub.connection
            assert conn is not None  # connected above
            replies = FeedReplies(conn)
            while not self._stopping:
                msg = replies.next(self.ping_interval)
                now = time.monotonic()
                if msg is None:
                    if now - self.last_rx > 2 * self.ping_interval and pinged:
                        raise redis.TimeoutError("no answer to PING on the live feed")
                    pubsub.ping()
                    pinged = True
                    continue
                self.last_rx = now
                pinged = False
                if owner.handle_arrived(pubsub, replies, msg) >= BUSY_FANOUT:
                    # Batching follows the backlog, not a clock: an event goes out as soon as it
                    # is read, and what arrives while a fan-out's writes run is read next, as one
                    # run (one write per stream). After a large fan-out, yield once first: stream
                    # loops with a backlog write it, and what arrives meanwhile joins the next run.
                    let_io_in()
        finally:
            if replies is not None:
                replies.close()
            pubsub.reset()

    def _drop(self) -> None:
        had_feed = self.pubsub is not None
        self.pubsub = None
        if had_feed and self.owner is not None:
            self.owner.lost()


# What ends a feed's connection as "Redis is unavailable" (retried quietly); BusUnavailable comes
# from the writer fence's script call on connect (RedisBus.connecting).
_LOST: tuple[type[BaseException], ...] = (*UNAVAILABLE, BusUnavailable)


def serve_until_stopped(
    serve: Callable[[], None], drop: Callable[[], None], stopping: Callable[[], bool],
    retrying: Callable[[], None], what: str, max_backoff: float = 5.0,
) -> None:
    """Run a feed's `serve` until `stopping()`: after each loss `drop` (the owner ends its streams),
    `retrying` (count it), back off and serve again. Shared by RedisFeed and ClusterFeed."""
    backoff = 0.1
    while not stopping():
        try:
            serve()
        except _LOST as exc:
            log.warning("%s lost redis: %s", what, exc)
        except gevent.GreenletExit:
            return
        except Exception:  # a bug must not leave the process deaf forever
            log.exception("%s failed", what)
        drop()
        if stopping():
            return
        retrying()
        gevent.sleep(backoff)
        backoff = min(backoff * 2, max_backoff)


def let_io_in() -> None:
    """Yield for one turn of the event loop with its I/O polled: what a busy reader gives the others.

    Why not gevent.sleep(0): it resumes this greenlet before the loop polls for
    I/O (for up to gevent's switch interval), so publishes waiting on their
    sockets do not get in. Before the reads waited on the socket, each read's
    poll gave them that turn; without it a fan-out under load starved this
    worker's publishers (the fanout benchmark's ceiling fell from ~750 to ~490
    publishes/s). An async watcher, sent once the loop holds it, wakes the
    loop's poll at once: a full turn, without a timer's wait.
    """
    hub = get_hub()
    turn = hub.loop.async_()
    hub.loop.run_callback(turn.send)  # runs after hub.wait has started the watcher
    hub.wait(turn)


class FeedReplies(Replies):
    """A feed connection's replies (redis_replies.py); a PONG outside subscribed mode (a feed with
    nothing subscribed) reads as `[b"pong", b"PONG"]`, like the one inside it."""

    __slots__ = ()

    def next(self, timeout: float) -> list | None:
        """Replies.next, a bare PONG as a list."""
        reply = Replies.next(self, timeout)
        return [b"pong", reply] if isinstance(reply, bytes) else reply
