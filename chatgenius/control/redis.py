"""The control plane on Redis (see ControlStore), on the bus' connections: no extra ones.

- the control channel: PUBLISH `cg:ctl` on the command pool; every process reads it on its one
  pub/sub connection (bus/redis_feed.py), so PUBLISH's count is the number of processes reached;
- reply mailboxes: `cg:r:<uuid>` lists (RPUSH + PEXPIRE, BLPOP), gone seconds after use;
- throttles: `cg:ty:<key>` via SET NX PX, one round trip, judged by Redis' clock;
- runtime flags: the hash `cg:flags`, field = flag name, value "1" or "0".
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping

import redis

from ..bus.base import BusUnavailable
from ..bus.redis_feed import RedisFeed
from ..redis_errors import unavailable

CONTROL = b"cg:ctl"
FLAGS_KEY = "cg:flags"
THROTTLE_PREFIX = "cg:ty:"


class RedisControl:
    """See ControlStore."""

    def __init__(self, client: redis.Redis, feed: RedisFeed) -> None:
        self.client = client
        self.on_control: Callable[[bytes], None] | None = None
        feed.route(CONTROL, self._received)

    def _received(self, payload: bytes) -> None:
        if self.on_control is not None:
            self.on_control(payload)

    def publish_control(self, payload: bytes) -> int:
        """See ControlStore.publish_control: PUBLISH counts the readers (one per process) it reached."""
        with unavailable():
            return int(self.client.publish(CONTROL, payload))

    def reply(self, mailbox: str, answer: str, ttl: float) -> None:
        """See ControlStore.reply: RPUSH and PEXPIRE in one transaction, so an unread mailbox expires."""
        with unavailable():
            pipe = self.client.pipeline(transaction=True)
            pipe.rpush(mailbox, answer)
            pipe.pexpire(mailbox, max(1, int(ttl * 1000)))
            pipe.execute()

    def receive(self, mailbox: str, timeout: float) -> str | None:
        """See ControlStore.receive: a BLPOP with the timeout rounded to Redis' millisecond precision."""
        # BLPOP takes seconds with millisecond precision (Redis >= 6); 0 would block forever.
        with unavailable():
            got = self.client.blpop([mailbox], timeout=max(0.01, round(timeout, 3)))
        return got[1].decode() if got else None

    def discard(self, mailbox: str) -> None:
        """See ControlStore.discard: best effort, the mailbox expires anyway."""
        with contextlib.suppress(BusUnavailable), unavailable():  # it expires by itself
            self.client.delete(mailbox)

    def first_within(self, key: str, seconds: float) -> bool:
        """See ControlStore.first_within: SET NX PX, so every process shares the throttle."""
        with unavailable():
            return bool(self.client.set(THROTTLE_PREFIX + key, b"1", nx=True, px=max(1, int(seconds * 1000))))

    def flags(self) -> dict[str, bool]:
        """See ControlStore.flags."""
        with unavailable():
            raw = self.client.hgetall(FLAGS_KEY)
        return {k.decode(): v == b"1" for k, v in raw.items()}

    def set_flags(self, changes: Mapping[str, bool | None]) -> None:
        """See ControlStore.set_flags: every change in one transaction."""
        with unavailable():
            pipe = self.client.pipeline(transaction=True)
            for name, value in changes.items():
                if value is None:
                    pipe.hdel(FLAGS_KEY, name)
                else:
                    pipe.hset(FLAGS_KEY, name, "1" if value else "0")
            pipe.execute()
