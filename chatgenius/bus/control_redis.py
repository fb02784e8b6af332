"""The control plane's shared state on Redis (see ControlStore), on the bus' own connection pool.

- reply mailboxes: `cg:r:<uuid>` lists (RPUSH + PEXPIRE, BLPOP), gone seconds after use;
- throttles: `cg:ty:<key>` via SET NX PX, one round trip, judged by Redis' clock;
- runtime flags: the hash `cg:flags`, field = flag name, value "1" or "0".
"""

from __future__ import annotations

from collections.abc import Mapping

import redis

from .base import BusUnavailable

FLAGS_KEY = "cg:flags"
THROTTLE_PREFIX = "cg:ty:"
_ERRORS = (redis.ConnectionError, redis.TimeoutError, OSError)


class RedisControl:
    """See ControlStore."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client

    def reply(self, mailbox: str, answer: str, ttl: float) -> None:
        try:
            pipe = self.client.pipeline(transaction=True)
            pipe.rpush(mailbox, answer)
            pipe.pexpire(mailbox, max(1, int(ttl * 1000)))
            pipe.execute()
        except _ERRORS as exc:
            raise BusUnavailable(f"redis unavailable: {exc}") from exc

    def receive(self, mailbox: str, timeout: float) -> str | None:
        # BLPOP takes seconds with millisecond precision (Redis >= 6); 0 would block forever.
        try:
            got = self.client.blpop([mailbox], timeout=max(0.01, round(timeout, 3)))
        except _ERRORS as exc:
            raise BusUnavailable(f"redis unavailable: {exc}") from exc
        return got[1].decode() if got else None

    def discard(self, mailbox: str) -> None:
        try:
            self.client.delete(mailbox)
        except _ERRORS:
            pass  # it expires by itself

    def first_within(self, key: str, seconds: float) -> bool:
        try:
            return bool(self.client.set(THROTTLE_PREFIX + key, b"1", nx=True, px=max(1, int(seconds * 1000))))
        except _ERRORS as exc:
            raise BusUnavailable(f"redis unavailable: {exc}") from exc

    def flags(self) -> dict[str, bool]:
        try:
            raw = self.client.hgetall(FLAGS_KEY)
        except _ERRORS as exc:
            raise BusUnavailable(f"redis unavailable: {exc}") from exc
        return {k.decode(): v == b"1" for k, v in raw.items()}

    def set_flags(self, changes: Mapping[str, bool | None]) -> None:
        try:
            pipe = self.client.pipeline(transaction=True)
            for name, value in changes.items():
                if value is None:
                    pipe.hdel(FLAGS_KEY, name)
                else:
                    pipe.hset(FLAGS_KEY, name, "1" if value else "0")
            pipe.execute()
        except _ERRORS as exc:
            raise BusUnavailable(f"redis unavailable: {exc}") from exc
