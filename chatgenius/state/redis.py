"""Shared state on the deployment's Redis (the bus' command client: no extra connections).

Tickets are plain keys with a TTL, taken with GET+DEL in one MULTI (single
use even when two workers race). Leases are one ZSET per user whose scores
are expiry times on Redis' own clock; acquiring is one Lua script
(lua/lease_acquire.lua) that drops expired leases, counts and adds
atomically, so no host's clock and no race decides who gets the last slot.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from importlib import resources

import redis

from ..redis_errors import unavailable
from .base import LeaseResult


def ticket_key(key: str) -> str:
    """The key of one stream ticket (by its hash, never the ticket itself)."""
    return "cg:t:" + key


def lease_key(owner: str) -> str:
    """The sorted set of a user's connection leases, braced to one cluster slot."""
    return "cg:c:{" + owner + "}"


def _script(name: str) -> str:
    return resources.files(__package__).joinpath(f"lua/{name}").read_text()


class RedisState:
    """See SharedState."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self._acquire = client.register_script(_script("lease_acquire.lua"))
        self._refresh = client.register_script(_script("lease_refresh.lua"))

    def put_ticket(self, key: str, value: str, ttl: float) -> bool:
        """See SharedState.put_ticket."""
        with unavailable():
            return bool(self.client.set(ticket_key(key), value, px=max(1, int(ttl * 1000)), nx=True))

    def take_ticket(self, key: str) -> str | None:
        """See SharedState.take_ticket: GET and DEL in one MULTI, so only one taker sees the value."""
        with unavailable():
            pipe = self.client.pipeline(transaction=True)
            pipe.get(ticket_key(key))
            pipe.delete(ticket_key(key))
            value, _ = pipe.execute()
        return value.decode() if value is not None else None

    def acquire_lease(self, owner: str, lease: str, limit: int, ttl: float) -> LeaseResult:
        """See SharedState.acquire_lease (lua/lease_acquire.lua)."""
        with unavailable():
            granted, held, wait_ms = self._acquire(keys=[lease_key(owner)], args=[lease, limit, int(ttl * 1000)])
        return LeaseResult(bool(granted), int(held), max(0, int(wait_ms)) / 1000)

    def refresh_leases(self, leases: Sequence[tuple[str, str]], ttl: float) -> None:
        """See SharedState.refresh_leases: one script call per owner, all in one pipeline."""
        by_owner: dict[str, list[str]] = defaultdict(list)
        for owner, lease in leases:
            by_owner[owner].append(lease)
        if not by_owner:
            return
        with unavailable():
            pipe = self.client.pipeline(transaction=False)
            for owner, ids in by_owner.items():
                self._refresh(keys=[lease_key(owner)], args=[int(ttl * 1000), *ids], client=pipe)
            pipe.execute()

    def release_lease(self, owner: str, lease: str) -> None:
        """See SharedState.release_lease."""
        with unavailable():
            self.client.zrem(lease_key(owner), lease)

    def setnx(self, key: str, value: str) -> str:
        """See SharedState.setnx: SET NX, then GET whichever value won."""
        with unavailable():
            self.client.set(key, value, nx=True)
            stored = self.client.get(key)
        return stored.decode() if stored is not None else value
