"""One master's live feed connection for the cluster bus (cluster_feed.py).

Not redis-py's PubSub: that connects on its first command and reconnects by
itself after an error (re-subscribing channels of many slots in one SSUBSCRIBE:
CROSSSLOT), reading its handshake on a socket the reader waits on. A NodeFeed is
connected, its handshake read, before its reader exists; once anything fails it
is dead for good (a redis-py Connection closed by an error would reconnect on the
next send or read: a connection nobody subscribed), and the supervisor makes new
feeds. Every I/O is bounded (FEED_IO_TIMEOUT), so a hung master cannot hold the
node's send lock for ever.
"""

from __future__ import annotations

import redis
from gevent.lock import Semaphore
from redis.backoff import NoBackoff
from redis.retry import Retry

FEED_IO_TIMEOUT = 5  # seconds: a handshake, a send or the rest of a started reply, at most


class NodeFeed:
    """A bare connection to one master, written one send at a time (under `lock`), read by one greenlet."""

    __slots__ = ("conn", "lock", "dead")

    def __init__(self, host: str, port: int, lock: Semaphore) -> None:
        self.conn = redis.Connection(
            host=host, port=port, socket_connect_timeout=3, socket_keepalive=True,
            socket_timeout=FEED_IO_TIMEOUT, retry=Retry(NoBackoff(), 0),
        )  # fmt: skip
        self.lock = lock  # the node's: held by the caller of send
        self.dead = False

    def connect(self) -> None:
        """Connect and read the handshake's replies (before any reader reads)."""
        try:
            self.conn.connect()
        except BaseException:
            self.close()
            raise

    @property
    def open(self) -> bool:
        """Neither closed nor failed (a send or read on it now would not reconnect)."""
        return not self.dead and self.conn.is_connected

    def send(self, *args: bytes | str) -> None:
        """Send one command (the caller holds `lock`); a failure of any kind kills the feed."""
        if not self.open:
            self.dead = True
            raise redis.ConnectionError("the cluster feed connection is closed")
        try:
            self.conn.send_command(*args)
        except BaseException:
            self.dead = True
            raise

    def close(self) -> None:
        """Close for good (no reconnect on a later send or read)."""
        self.dead = True
        self.conn.disconnect()
