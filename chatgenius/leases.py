"""MAX_CONNECTIONS_PER_USER across every worker and host: one lease per open stream.

A stream takes a lease in the shared state before it opens and gives it back
when it closes. One greenlet per process refreshes all of the process' leases
every `ttl / 3` seconds in a single round trip, so the cost does not grow
with the number of streams and does not depend on a stream being idle enough
to send heartbeats (a busy stream sends none). If the process dies without
releasing (SIGKILL, OOM), its leases expire within `ttl` (LEASE_TTL, at most
60 s) and the user's slots come back by themselves (Centrifugo #544 is the
per-node cap this replaces).
"""

from __future__ import annotations

import logging

from . import log
from .background import Every, warn
from .bus.base import BusUnavailable
from .state.base import LeaseResult, SharedState


class ConnectionLeases:
    """Acquire, refresh and release the leases of this process' streams."""

    def __init__(self, state: SharedState, limit: int, ttl: float) -> None:
        self.limit = limit
        self.ttl = ttl
        self._state = state
        # lease id -> owner: what this process holds (streams and waiting long-polls, "poll:<id>")
        self._local: dict[str, str] = {}
        # the next round retries; leases outlive one missed refresh
        self._refresher = Every(ttl / 3, self.refresh, warn("lease.refresh_failed", leases=lambda: len(self._local)))

    def acquire(self, owner: str, lease: str) -> LeaseResult:
        """Take a slot for `owner`, or say when one may free up (BusUnavailable if the state is down)."""
        result = self._state.acquire_lease(owner, lease, self.limit, self.ttl)
        if result.granted:
            self._local[lease] = owner
            self._refresher.start()
        return result

    def release(self, owner: str, lease: str) -> None:
        """Give a slot back; if the state is down the lease simply expires within the TTL."""
        if self._local.pop(lease, None) is None:
            return
        try:
            self._state.release_lease(owner, lease)
        except BusUnavailable as exc:
            log.event("lease.release_failed", logging.WARNING, user_id=owner, connection_id=lease, error=str(exc))

    def refresh(self) -> int:
        """Extend every local lease by the TTL; returns how many."""
        held = [(owner, lease) for lease, owner in self._local.items()]
        if held:
            self._state.refresh_leases(held, self.ttl)
        return len(held)

    def close(self) -> None:
        """Stop the refresher; the leases lapse by themselves within LEASE_TTL."""
        self._refresher.stop()
