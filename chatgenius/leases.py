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

import gevent

from . import log
from .bus.base import BusUnavailable
from .state.base import LeaseResult, SharedState


class ConnectionLeases:
    """Acquire, refresh and release the leases of this process' streams."""

    def __init__(self, state: SharedState, limit: int, ttl: float) -> None:
        self.limit = limit
        self.ttl = ttl
        self._state = state
        self._local: dict[str, str] = {}  # lease id (connection id) -> owner
        self._refresher: gevent.Greenlet | None = None

    def acquire(self, owner: str, lease: str) -> LeaseResult:
        """Take a slot for `owner`, or say when one may free up (BusUnavailable if the state is down)."""
        result = self._state.acquire_lease(owner, lease, self.limit, self.ttl)
        if result.granted:
            self._local[lease] = owner
            self._start()
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

    def _start(self) -> None:
        if self._refresher is None or self._refresher.dead:
            self._refresher = gevent.spawn(self._run)

    def _run(self) -> None:
        while True:
            gevent.sleep(self.ttl / 3)
            try:
                self.refresh()
            except Exception as exc:  # the next round retries; leases outlive one missed refresh
                log.event("lease.refresh_failed", logging.WARNING, error=repr(exc), leases=len(self._local))

    def close(self) -> None:
        if self._refresher is not None:
            self._refresher.kill(block=False)
            self._refresher = None
