"""The presence seam: PresenceStore, the shared state behind Presence (presence/service.py).

Backends: presence/memory.py (one process) and presence/redis.py; both pass
tests/chat/test_stores.py. The contract is the PresenceStore docstring.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple, Protocol

from ..events import Draft, draft

ONLINE = "online"
OFFLINE = "offline"


class Lease(NamedTuple):
    """One stream's presence on one channel."""

    channel: str
    user: str
    connection: str


DraftFor = Callable[[str, str, str], Draft]  # (channel, user, status) -> the user.presence draft


class PresenceStore(Protocol):
    """Shared presence state (presence/memory.py, presence/redis.py).

    Guarantees (tests/chat/test_stores.py holds both backends to them):
    - A state change and the event announcing it are one atomic step, so the
      order of presence events in history is the order of the changes.
    - A user is announced online once per channel until announced offline;
      an offline is announced once, `grace` s after their last lease went
      (left, or lapsed unrefreshed), and never if a lease came back before.
    - Leases expire by one clock (Redis' TIME on Redis), never each host's.
    - BusUnavailable when the store cannot be reached.
    """

    def join(self, leases: Sequence[Lease], ttl: float, draft_for: DraftFor) -> list[bool]:
        """Take `leases` for `ttl` s; announce online where the user was not; True per lease that announced."""

    def leave(self, leases: Sequence[Lease], grace: float) -> None:
        """Drop `leases`; a user left with none on a channel is due offline in `grace` s."""

    def refresh(self, leases: Sequence[Lease], ttl: float) -> list[Lease]:
        """Extend `leases` to `ttl` s from now; return those that lapsed meanwhile (to be joined again)."""

    def sweep(self, grace: float, draft_for: DraftFor, limit: int = 200) -> list[tuple[str, str]]:
        """Expire lapsed leases, announce every due offline once; returns the (channel, user) announced here."""

    def online(self, channel: str) -> list[str]:
        """Users announced online on `channel` (sorted), as the events on the channel say."""


def presence_draft(channel: str, user: str, status: str) -> Draft:
    """The `user.presence` event, validated like any publisher's."""
    return draft({"channel": channel, "type": "user.presence", "data": {"user_id": user, "status": status}}, 1 << 16)
