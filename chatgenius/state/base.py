"""Shared state: the little the service must agree on across workers and hosts, beside the event bus.

Three things live here: single-use stream tickets, per-user connection
leases, and write-once keys (the dev signing key). Every backend passes the shared contract suite in
tests/bus/test_contract.py (memory and a real Redis):

- Tickets: `put_ticket` stores a value for at most `ttl` seconds; `take_ticket`
  returns it and deletes it in one atomic step, so a ticket is redeemed once
  even when two workers race for it. Callers pass a hash of the ticket as the
  key, never the ticket itself: a dump of the store yields nothing usable.
- Leases: a lease is one open stream of one user. `acquire_lease` grants it
  only while the user holds fewer than `limit` unexpired leases (check and add
  are one atomic step, so two workers cannot both take the last slot); a lease
  not refreshed within `ttl` seconds expires by itself, so the slots of a
  SIGKILLed worker come back without anyone releasing them. Expiry is judged by
  one clock (Redis' own TIME on the Redis backend), never by each host's clock.
- Write-once keys: `setnx` keeps the first value stored under a key; every
  later caller gets that one back (workers racing at start agree on it).
- Failure: a backend that cannot be reached raises BusUnavailable (503).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class LeaseResult:
    """What `acquire_lease` decided: granted or not, and when a slot may free up at the latest."""

    granted: bool
    held: int  # unexpired leases of the owner after the call
    retry_after: float = 0.0  # seconds until the oldest lease expires unless refreshed (0 if granted)


class SharedState(Protocol):
    """Tickets and connection leases shared by every worker and host of a deployment."""

    def put_ticket(self, key: str, value: str, ttl: float) -> bool:
        """Store `value` under `key` for `ttl` seconds unless the key exists; True if stored."""

    def take_ticket(self, key: str) -> str | None:
        """Return and delete the value under `key` atomically (None if absent or expired)."""

    def acquire_lease(self, owner: str, lease: str, limit: int, ttl: float) -> LeaseResult:
        """Grant `lease` to `owner` if they hold fewer than `limit` live leases (re-acquiring one they hold is granted)."""

    def refresh_leases(self, leases: Sequence[tuple[str, str]], ttl: float) -> None:
        """Extend every `(owner, lease)` to expire `ttl` seconds from now (one round trip)."""

    def release_lease(self, owner: str, lease: str) -> None:
        """Drop one lease; releasing an unknown or expired lease is not an error."""

    def setnx(self, key: str, value: str) -> str:
        """Store `value` under `key` unless one is there; return the stored one (the dev signing key)."""
