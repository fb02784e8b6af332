"""In-process shared state for the embedded default (`python app.py`): one process only.

Same semantics as the Redis backend (see SharedState), judged by one
monotonic clock, so the contract suite runs unchanged against both.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from .base import LeaseResult


class MemoryState:
    """See SharedState; dicts with expiry times, swept as they are touched."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._tickets: dict[str, tuple[float, str]] = {}
        self._leases: dict[str, dict[str, float]] = {}
        self._kv: dict[str, str] = {}

    def put_ticket(self, key: str, value: str, ttl: float) -> bool:
        """See SharedState.put_ticket."""
        now = self._clock()
        self._sweep_tickets(now)
        existing = self._tickets.get(key)
        if existing is not None and existing[0] > now:
            return False
        self._tickets[key] = (now + ttl, value)
        return True

    def take_ticket(self, key: str) -> str | None:
        """See SharedState.take_ticket."""
        found = self._tickets.pop(key, None)
        if found is None or found[0] <= self._clock():
            return None
        return found[1]

    def acquire_lease(self, owner: str, lease: str, limit: int, ttl: float) -> LeaseResult:
        """See SharedState.acquire_lease."""
        now = self._clock()
        held = self._live(owner, now)
        if lease in held or len(held) < limit:
            held[lease] = now + ttl
            self._leases[owner] = held
            return LeaseResult(True, len(held))
        return LeaseResult(False, len(held), max(0.0, min(held.values()) - now))

    def refresh_leases(self, leases: Sequence[tuple[str, str]], ttl: float) -> None:
        """See SharedState.refresh_leases."""
        expires = self._clock() + ttl
        for owner, lease in leases:
            self._leases.setdefault(owner, {})[lease] = expires

    def release_lease(self, owner: str, lease: str) -> None:
        """See SharedState.release_lease."""
        held = self._leases.get(owner)
        if held is not None:
            held.pop(lease, None)
            if not held:
                del self._leases[owner]

    def setnx(self, key: str, value: str) -> str:
        """See SharedState.setnx."""
        return self._kv.setdefault(key, value)

    def _live(self, owner: str, now: float) -> dict[str, float]:
        return {k: exp for k, exp in self._leases.get(owner, {}).items() if exp > now}

    def _sweep_tickets(self, now: float) -> None:
        if len(self._tickets) > 1024:
            self._tickets = {k: v for k, v in self._tickets.items() if v[0] > now}
