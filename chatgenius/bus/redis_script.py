"""A Lua script on the hot path, called over connections of its own (no pool checks per call).

Why: redis-py's connection pool, on every command, polls the connection for
stray data (under gevent a poll is an I/O watcher started and stopped), takes
a queue slot with a timeout and records observability counters. Measured in a
gevent worker, that was over half of a publish's ~70 µs Redis round trip
(docs/PERFORMANCE.md, "Where a publish goes"). A publish is one EVALSHA, so it
takes a connection from a small idle list instead.

What the pool's check guarded against cannot happen here: a connection on
which anything failed (a timeout, a kill, a lost server) is closed and never
reused, so no half-read reply is left for the next call. A script error
(a Lua `error_reply`, e.g. the publish quota's) leaves the connection clean and
it is reused; a refusal that says the server cannot serve now (READONLY from a
primary demoted by a failover, LOADING) closes it, so the next call connects
again (through Sentinel, to the new primary). Nothing is retried: a lost answer may mean the script ran, and
only the caller knows whether a retry is safe (Idempotency-Key).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import redis
from gevent.lock import BoundedSemaphore
from redis.exceptions import NoScriptError, ResponseError

from ..redis_errors import is_unavailable
from .redis_replies import Replies

MAX_OPEN = 32  # like the command pool's bound: publishes beyond it wait for a connection
MAX_IDLE = 8


class Script:
    """`script(keys, args)`: EVALSHA (EVAL once if the server lost its script cache) on an idle connection."""

    def __init__(self, client: redis.Redis, source: str) -> None:
        pool = client.connection_pool  # only for its connection settings (URL, Sentinel, TLS): nothing is taken from it
        self._connect = lambda: pool.connection_class(**pool.connection_kwargs)
        self.source = source
        self.sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()  # Redis names scripts by SHA-1
        self._idle: list[Replies] = []  # each with its connection (Replies.conn)
        self._slots = BoundedSemaphore(MAX_OPEN)

    def __call__(self, keys: Sequence[object], args: Sequence[object]) -> object:
        with self._slots:
            replies = self._idle.pop() if self._idle else self._new_connection()
            try:
                reply = self._run(replies, keys, args)
            except ResponseError as exc:
                if is_unavailable(exc):  # READONLY (a demoted primary), LOADING...: reconnect next time
                    _drop(replies)
                    self.close()
                else:  # the script's own error reply (a quota): the connection read all of it
                    self._keep(replies)
                raise
            except BaseException:
                _drop(replies)
                self.close()  # the others were idle on the same server: likely dead too
                raise
            self._keep(replies)
            return reply

    def _new_connection(self) -> Replies:
        conn = self._connect()
        # connect() now, as the pool does: a Sentinel-managed connection finds its primary in connect();
        # the first command's implicit connect would dial the connection's default address instead.
        conn.connect()
        return Replies(conn)

    def _run(self, replies: Replies, keys: Sequence[object], args: Sequence[object]) -> object:
        replies.send("EVALSHA", self.sha, len(keys), *keys, *args)
        try:
            return replies.answer()
        except NoScriptError:  # a restarted or flushed server: EVAL runs it and caches it again
            replies.send("EVAL", self.source, len(keys), *keys, *args)
            return replies.answer()

    def _keep(self, replies: Replies) -> None:
        if len(self._idle) < MAX_IDLE:
            self._idle.append(replies)
        else:
            _drop(replies)

    def close(self) -> None:
        """Close the idle connections (the next call opens a new one)."""
        idle, self._idle = self._idle, []
        for replies in idle:
            _drop(replies)


def _drop(replies: Replies) -> None:
    """Close a connection and stop watching its socket."""
    replies.close()
    replies.conn.disconnect()
