"""Presence per channel: who has a stream open on it, announced as durable `user.presence` events.

Contract (The stream, Presence): a user's first stream on a channel sends
`{"user_id", "status": "online"}` there; when their last one closes, `"offline"`
follows after PRESENCE_GRACE seconds unless they reconnect meanwhile (a page
reload or a drained worker announces nothing). Every stream holds one lease per
channel in the shared store; leases are refreshed by one greenlet per process
(a busy stream sends no heartbeats, so refreshing on heartbeats would not do),
so the users of a SIGKILLed worker go offline after LEASE_TTL + grace. Each
process also runs a sweeper; the store makes every announcement happen exactly
once however many sweepers race (centrifuge's presence.go is the interface
shape; its presence has no grace, which is what makes clients flap).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING

from .. import log
from ..background import Every, warn
from .base import DraftFor, Lease, PresenceStore, presence_draft

if TYPE_CHECKING:
    from ..stream import StreamSession


class Presence:
    """This process' side: its streams' leases, the refresher and the sweeper (a StreamObserver).

    It keeps the leases it holds in the store (connection -> user, channels), not
    the streams (streams.py): by the time a stream is reported closed it is
    detached from its channels, and a subscription change joins or leaves
    channels only once the bus confirmed them.
    """

    def __init__(
        self,
        store: PresenceStore,
        ttl: float,
        grace: float,
        sweep_interval: float | None = None,
        draft_for: DraftFor = presence_draft,
    ) -> None:
        self.store = store
        self.ttl = ttl
        self.grace = grace
        self.sweep_interval = sweep_interval or min(1.0, max(0.2, min(grace, ttl) / 4))
        self._draft_for = draft_for
        self._local: dict[str, tuple[str, set[str]]] = {}  # connection -> (user, channels)
        self._loops = (
            Every(ttl / 3, self.refresh, warn("presence.refresh_failed")),
            Every(self.sweep_interval, self.sweep, warn("presence.sweep_failed")),
        )

    # -- streams ---------------------------------------------------------------------
    def stream_opened(self, session: StreamSession) -> None:
        """See StreamObserver.stream_opened: the stream's user joins its channels."""
        self.joined(session.sub.id, session.sub.user_id, sorted(session.sub.channels))

    def stream_closed(self, session: StreamSession) -> None:
        """See StreamObserver.stream_closed: the stream's leases go, after the grace period."""
        self.left(session.sub.id)

    def joined(self, connection: str, user: str, channels: Iterable[str]) -> None:
        """A stream opened on (or was subscribed to) `channels`; never raises: the refresher heals."""
        entry = self._local.setdefault(connection, (user, set()))
        fresh = [c for c in channels if c not in entry[1]]
        entry[1].update(fresh)
        if fresh:
            self._join([Lease(c, user, connection) for c in fresh])

    def left(self, connection: str, channels: Iterable[str] | None = None) -> None:
        """A stream closed (all channels) or was unsubscribed from `channels`."""
        entry = self._local.get(connection)
        if entry is None:
            return
        user, held = entry
        gone = list(held) if channels is None else [c for c in channels if c in held]
        held.difference_update(gone)
        if not held:
            del self._local[connection]
        if not gone:
            return
        try:
            self.store.leave([Lease(c, user, connection) for c in gone], self.grace)
        except Exception as exc:  # the leases lapse by themselves within the TTL
            log.event("presence.error", logging.WARNING, user_id=user, connection_id=connection, error=repr(exc))

    def online(self, channel: str) -> list[str]:
        """The users online in `channel`, across every process."""
        return self.store.online(channel)

    def leases(self) -> list[Lease]:
        """The leases this process holds, one per (stream, channel), for the refresher."""
        return [Lease(c, user, conn) for conn, (user, chans) in self._local.items() for c in chans]

    def _join(self, leases: list[Lease]) -> None:
        # Called from the stream-open hook: a failure here must not fail (and so leak) the stream.
        # The lease is in `_local`, so the refresher finds it missing and joins it again.
        try:
            self.store.join(leases, self.ttl, self._draft_for)
        except Exception as exc:
            log.event("presence.error", logging.WARNING, user_id=leases[0].user, error=repr(exc))

    # -- background work -----------------------------------------------------------------
    def refresh(self) -> int:
        """Extend every local lease; re-join the ones that lapsed (a Redis blip longer than the TTL)."""
        held = self.leases()
        if held:
            lapsed = self.store.refresh(held, self.ttl)
            current = [lease for lease in lapsed if lease.channel in self._local.get(lease.connection, ("", set()))[1]]
            if current:
                self.store.join(current, self.ttl, self._draft_for)
        return len(held)

    def sweep(self) -> list[tuple[str, str]]:
        """Publish `presence.leave` for users whose last lease lapsed (a process died without leaving)."""
        return self.store.sweep(self.grace, self._draft_for)

    def start(self) -> None:
        """Start the refresher and the sweeper."""
        for loop in self._loops:
            loop.start()

    def close(self) -> None:
        """Stop the refresher and the sweeper; the leases lapse by themselves."""
        for loop in self._loops:
            loop.stop()

