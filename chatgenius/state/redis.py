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

from ..bus.base import BusUnavailable
from .base import LeaseResult

_ERRORS = (redis.ConnectionError, redis.TimeoutError, OSError)


def ticket_key(key: str) -> str:
    return "cg:t:" + key


def lease_key(owner: str) -> str:
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
        try:
            return bool(self.client.set(ticket_key(key), value, px=max(1, int(ttl * 1000)), nx=True))
        except _ERRORS as exc:
            raise BusUnavailable(f"redis unavailable: {exc}") from exc

    def take_ticket(self, key: str) -> str | None:
        """See SharedState.take_ticket: GET and DEL in one MULTI, so only one taker sees the value."""
        try:
            pipe = self.client.pipeline(transaction=True)
            pipe.get(ticket_key(key))
            pipe.delete(ticket_key(key))
            value, _ = pipe.execute()
        except _ERRORS as exc:
            raise BusUnavailable(f"redis unavailable: {exc}") from exc
        return value.decode() if value is not None else None

    def acquire_lease(self, owner: str, lease: str, limit: int, ttl: float) -> LeaseResult:
        """See SharedState.acquire_lease (lua/lease_acquire.lua)."""
        try:
            granted, held, wait_ms = self._acquire(keys=[lease_key(owner)], args=[lease, limit, int(ttl * 1000)])
        except _ERRORS as exc:
            raise BusUnavailable(f"redis unavailable: {exc}") from exc
        return LeaseResult(bool(granted), int(held), max(0, int(wait_ms)) / 1000)

    def refresh_leases(self, leases: Sequence[tuple[str, str]], ttl: float) -> None:
        """See SharedState.refresh_leases: one script call per owner, all in one pipeline."""
        by_owner: dict[str, list[str]] = defaultdict(list)
        for owner, lease in leases:
            by_owner[owner].append(lease)
        if not by_owner:
            return
        try:
            pipe = self.client.pipeline(transaction=False)
            for owner, ids in by_owner.items():
                self._refresh(keys=[lease_key(owner)], args=[int(ttl * 1000), *ids], client=pipe)
            pipe.execute()
        except _ERRORS as exc:
            raise BusUnavailable(f"redis unavailable: {exc}") from exc

    def release_lease(self, owner: str, lease: str) -> None:
        """See SharedState.release_lease."""
        try:
            self.client.zrem(lease_key(owner), lease)
        except _ERRORS as exc:
            raise BusUnavailable(f"redis unavailable: {exc}") from exc
