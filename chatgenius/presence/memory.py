"""Presence in process for the embedded default (`python app.py`): see PresenceStore.

Dicts judged by one monotonic clock; announcing is a direct MemoryBus.publish with
no yield in between, so a state change and its event are as atomic as on Redis.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from ..bus.memory import MemoryBus
from .base import OFFLINE, ONLINE, DraftFor, Lease


class MemoryPresence:
    """See PresenceStore."""

    def __init__(self, bus: MemoryBus, clock: Callable[[], float] = time.monotonic) -> None:
        self.bus = bus
        self._clock = clock
        self._leases: dict[Lease, float] = {}  # -> expiry
        self._held: dict[tuple[str, str], set[str]] = {}  # (channel, user) -> connections
        self._online: dict[str, set[str]] = {}  # channel -> announced users
        self._due: dict[tuple[str, str], float] = {}  # (channel, user) -> when offline is due

    def join(self, leases: Sequence[Lease], ttl: float, draft_for: DraftFor) -> list[bool]:
        """See PresenceStore.join."""
        out = []
        now = self._clock()
        for lease in leases:
            key = (lease.channel, lease.user)
            self._leases[lease] = now + ttl
            self._held.setdefault(key, set()).add(lease.connection)
            self._due.pop(key, None)
            users = self._online.setdefault(lease.channel, set())
            announce = lease.user not in users
            if announce:
                users.add(lease.user)
                self.bus.publish([draft_for(lease.channel, lease.user, ONLINE)])
            out.append(announce)
        return out

    def leave(self, leases: Sequence[Lease], grace: float) -> None:
        """See PresenceStore.leave."""
        due = self._clock() + grace
        for lease in leases:
            self._leases.pop(lease, None)
            self._drop(lease, due)

    def refresh(self, leases: Sequence[Lease], ttl: float) -> list[Lease]:
        """See PresenceStore.refresh."""
        expiry = self._clock() + ttl
        missing = []
        for lease in leases:
            if lease in self._leases:
                self._leases[lease] = expiry
            else:
                missing.append(lease)
        return missing

    def sweep(self, grace: float, draft_for: DraftFor, limit: int = 200) -> list[tuple[str, str]]:
        """See PresenceStore.sweep."""
        now = self._clock()
        for lease, expiry in [(k, v) for k, v in self._leases.items() if v <= now][:limit]:
            del self._leases[lease]
            self._drop(lease, expiry + grace)
        announced = []
        for key in [k for k, v in self._due.items() if v <= now][:limit]:
            del self._due[key]
            channel, user = key
            if self._held.get(key) or user not in self._online.get(channel, set()):
                continue
            self._online[channel].discard(user)
            if not self._online[channel]:
                del self._online[channel]
            self.bus.publish([draft_for(channel, user, OFFLINE)])
            announced.append(key)
        return announced

    def online(self, channel: str) -> list[str]:
        """See PresenceStore.online."""
        return sorted(self._online.get(channel, ()))

    def _drop(self, lease: Lease, due: float) -> None:
        key = (lease.channel, lease.user)
        held = self._held.get(key)
        if held is not None:
            held.discard(lease.connection)
            if held:
                return
            del self._held[key]
        if lease.user in self._online.get(lease.channel, ()):
            self._due.setdefault(key, due)
