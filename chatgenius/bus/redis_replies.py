"""Replies off one Redis connection, read straight from its socket by the one greenlet that reads it.

Used where a reply is awaited once per event: the live feed (redis_feed.py,
cluster_feed.py: a wait per message) and the publish script's connections
(redis_script.py: a wait per EVALSHA). Why not redis-py's `read_response`:
under gevent each wait for a reply there is a `recv` failing with EAGAIN, its
exception, a timeout object and, with a timeout of the caller's, two
`settimeout` calls. Measured on the feed (bench/feed_read_cost.py): about
75 µs of CPU per message through redis-py, about 33 here.

A wait here is the socket's own I/O watcher and one timer, then one `recv`
into a buffer fed to the connection's hiredis reader: a reply split across TCP
segments is finished by the next wait, and a timeout drops nothing. A peer
that closes reads as EOF: redis.ConnectionError. Error replies are raised as
redis-py raises them (its parser builds them: NoScriptError, ResponseError...).
A connection this cannot read that way (TLS, or redis-py's pure-Python parser)
is read through `read_response`; so is every one when redis-py's internals are
not the ones expected here (the private names: `_sock`, `_parser._reader`).
"""

from __future__ import annotations

from typing import Any

import gevent.socket
import redis

from ..readable import Readable

try:  # what redis-py's hiredis reader returns while a reply is incomplete
    from redis._parsers.hiredis import NOT_ENOUGH_DATA as _NOT_ENOUGH
except ImportError:  # pragma: no cover - another redis-py: every read goes through read_response
    _NOT_ENOUGH = None

try:  # redis-py packs commands with it too when hiredis is installed
    from hiredis import pack_command as _pack
except ImportError:  # pragma: no cover - hiredis is a dependency; without it redis-py packs and sends
    _pack = None  # type: ignore[assignment]


class Replies:
    """`next(timeout)`: a feed's next reply, or None when none came within `timeout` s;
    `answer()`: the reply to a command just sent.

    With `timeout` 0: only a reply already read off the socket (no syscall),
    what a reader takes behind the message it woke for. Replies come as Redis
    sent them (`[b"message", channel, payload]` on a feed). One instance per
    connection, read by one greenlet; a new connection needs a new instance.
    """

    __slots__ = ("conn", "_reader", "_raw", "_buffer", "_readable")

    def __init__(self, conn: redis.connection.AbstractConnection, direct: bool = True) -> None:
        """`direct=False` reads through redis-py where it could read off the socket (a benchmark's
        comparison: bench/feed_read_cost.py)."""
        self.conn = conn  # the connection read (its owner sends on it)
        sock = getattr(conn, "_sock", None)
        raw = getattr(sock, "_sock", None)  # gevent's socket keeps the OS socket non-blocking
        reader = getattr(getattr(conn, "_parser", None), "_reader", None)  # hiredis' Reader
        direct = (
            direct and type(sock) is gevent.socket.socket  # a subclass (TLS) would read ciphertext
            and raw is not None and raw.gettimeout() == 0.0
            and reader is not None and _NOT_ENOUGH is not None
            # a class that reads its own way keeps it (Sentinel's turns READONLY into a reconnect)
            and type(conn).read_response is redis.connection.AbstractConnection.read_response
        )
        self._reader = reader if direct else None
        self._raw: Any = raw  # the OS socket (None when not read directly)
        self._buffer = bytearray(65536) if direct else bytearray()
        self._readable = Readable(raw.fileno()) if direct and raw is not None else None

    @property
    def direct(self) -> bool:
        """Read off the socket here (else through redis-py's read_response)."""
        return self._reader is not None

    def next(self, timeout: float) -> Any:
        """The next reply, or None after `timeout` s (0: only one already read). For a feed, whose
        replies are never nil: None means none came."""
        if self._reader is None:
            try:
                return self.conn.read_response(timeout=timeout, disconnect_on_error=False, push_request=True)
            except redis.TimeoutError:
                return None
        reply = self._take(timeout)
        return None if reply is _NOT_ENOUGH else reply

    def answer(self) -> Any:
        """The reply to the command just sent; redis.TimeoutError after the connection's socket timeout."""
        if self._reader is None:
            return self.conn.read_response()
        reply = self._take(self.conn.socket_timeout)
        if reply is _NOT_ENOUGH:
            raise redis.TimeoutError("Timeout reading from socket")
        return reply

    def send(self, *args: object) -> None:
        """Send one command (`answer` reads its reply): packed by hiredis, as redis-py would, and
        written in one system call when the socket takes it all (redis-py's `sendall` under gevent
        asks the socket's buffer size first); the rest, if any, through redis-py."""
        if self._reader is None or _pack is None:
            self.conn.send_command(*args)
            return
        try:
            data = _pack(args)  # type: ignore[arg-type]  # bad types raise TypeError: below
        except TypeError as exc:
            raise redis.DataError(exc) from exc
        try:
            sent = self._raw.send(data)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            raise redis.ConnectionError(f"writing to Redis failed: {exc}") from exc
        if sent < len(data):
            self.conn.send_packed_command([data[sent:]], check_health=False)  # a list: bytes would iterate as ints

    def close(self) -> None:
        """Stop watching the socket; call it when the connection is dropped. Its watcher stays started
        between waits (readable.py). gevent's close of the socket fires it, and it then stops itself,
        but a socket closed any other way would leave it started on a descriptor that may be reused."""
        if self._readable is not None:
            self._readable.close()
            self._readable = None
            self._reader = None  # a read after this goes through redis-py, which sees the closed connection

    def _take(self, timeout: float | None) -> Any:
        """The next reply off the socket, or _NOT_ENOUGH once `timeout` s passed without one."""
        reader = self._reader
        assert reader is not None
        reply = reader.gets()
        while reply is _NOT_ENOUGH:
            if timeout == 0 or not self._readable.wait(timeout):  # type: ignore[union-attr]
                return _NOT_ENOUGH
            try:
                got = self._raw.recv_into(self._buffer)
            except BlockingIOError:
                continue
            except OSError as exc:
                raise redis.ConnectionError(f"reading from Redis failed: {exc}") from exc
            if got == 0:
                raise redis.ConnectionError("Redis closed the connection")
            reader.feed(self._buffer, 0, got)
            reply = reader.gets()
        if isinstance(reply, Exception):  # an error reply, or the parser's protocol error
            raise reply
        return reply
