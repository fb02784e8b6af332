"""The registry of this process' open streams, and the observers told when one opens or closes.

One registry, owned by Realtime: the control plane's handlers (admin listing
and kicking, live subscription changes), runtime flags' fallback and
telemetry's counts read it rather than each keeping a copy. Observers are
registered once, by type (`observe`), and are called after the fact, in
registration order: they can watch a stream, never refuse it. Other indexes
are not streams: the Hub's channel -> subscribers map (every attached sink,
waiting long-polls included, what fan-out and drain walk), the connection
leases (streams and long-polls) and the presence leases held in the store.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from .stream import StreamSession


class StreamObserver(Protocol):
    """Told of every stream of this process, once open (replayed, about to send) and once closed."""

    def stream_opened(self, session: StreamSession) -> None:
        """The stream is registered; called before its first byte is sent."""

    def stream_closed(self, session: StreamSession) -> None:
        """The stream is unregistered and detached from the bus; its lease is released."""


class Streams:
    """This process' open streams by connection id, with the number of distinct users holding them."""

    def __init__(self) -> None:
        self._sessions: dict[str, StreamSession] = {}
        self._per_user: dict[str, int] = {}
        self._observers: list[StreamObserver] = []

    def observe(self, observer: StreamObserver) -> None:
        """Tell `observer` of every stream opened or closed from now on."""
        self._observers.append(observer)

    def opened(self, session: StreamSession) -> None:
        """Register `session`, then tell the observers."""
        sub = session.sub
        self._sessions[sub.id] = session
        self._per_user[sub.user_id] = self._per_user.get(sub.user_id, 0) + 1
        for observer in self._observers:
            observer.stream_opened(session)

    def closed(self, session: StreamSession) -> None:
        """Unregister `session` (once), then tell the observers."""
        sub = session.sub
        if self._sessions.pop(sub.id, None) is None:
            return
        held = self._per_user.get(sub.user_id, 0) - 1
        if held > 0:
            self._per_user[sub.user_id] = held
        else:
            self._per_user.pop(sub.user_id, None)
        for observer in self._observers:
            observer.stream_closed(session)

    def get(self, connection_id: str) -> StreamSession | None:
        """The open stream with this connection id in this process, if any (kick, admin)."""
        return self._sessions.get(connection_id)

    def __contains__(self, connection_id: object) -> bool:
        return connection_id in self._sessions

    def __iter__(self) -> Iterator[StreamSession]:
        """A snapshot: safe while streams open and close."""
        return iter(list(self._sessions.values()))

    def __len__(self) -> int:
        return len(self._sessions)

    @property
    def users(self) -> int:
        """Distinct users with at least one open stream here."""
        return len(self._per_user)
