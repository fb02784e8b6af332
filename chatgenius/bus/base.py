"""The event bus seam: events only (shared state is state/, presence presence/, control control/).

Guarantees every backend gives (the shared contract suite in
tests/bus/test_contract.py holds each one to them):

- Ordering: every durable event gets a cursor from one sequence shared by all
  channels; history and the live feed deliver in that order.
- Atomicity: an event is in history if and only if it was (or will be) sent on
  the live feed; a batch gets consecutive cursors or fails whole.
- Race-free resume: `attach` returns only once the live feed covers the
  channels, so history read *after* it plus live frames with a higher seq is
  gap-free and duplicate-free (the stream drops live seq <= last replayed).
- Honest gaps: `replay` names every channel whose history no longer reaches
  back to the cursor (trimmed, expired, another epoch, or a seq the bus never
  issued) instead of skipping silently; the caller sends `system.reset`.
- Ephemeral events have no cursor, are never stored and never replayed.
- Exactly once per idempotency key (`publish_once`): a repeat within the window
  answers the original ids and publishes nothing, decided in the same atomic
  step as the publish, so two racing duplicates publish once.
- Security: the bus never sees HTTP; callers authorize channels before
  `attach`/`replay`. Frames are built only by chatgenius.sse from validated
  drafts, so no publisher input can add a line or field to the stream.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from ..cursor import Cursor
from ..events import Draft
from ..sse import durable_frame

if TYPE_CHECKING:  # fanout is gevent code; bus/redis_publish.py (no gevent) imports this module
    from ..fanout import Hub, Subscriber
    from ..shard_cursor import Vector


@dataclass(frozen=True, slots=True)
class Record:
    """A stored event as read back from history."""

    seq: int
    cursor: str
    type: str
    envelope: str  # JSON text, one line

    @property
    def frame(self) -> bytes:
        """The record's SSE frame, as the live path would have sent it (replay and poll use it)."""
        return durable_frame(self.cursor, self.type, self.envelope)


@dataclass(slots=True)
class Replay:
    """What `replay` found: events after the cursor, in seq order, and channels that lost history."""

    events: list[Record] = field(default_factory=list)
    reset: list[str] = field(default_factory=list)
    head: Cursor | None = None
    # Redis Cluster: each shard's position (of the head's epoch) the events follow, which the
    # stream's ids start from (shard_cursor.stamp_replay); None on one Redis.
    start: Vector | None = None


class BusUnavailable(RuntimeError):
    """The backend cannot be reached now (503, and the client retries)."""


@dataclass(frozen=True, slots=True)
class Quota:
    """At most `amount` publishes per `seconds` under `key` (a fixed window from the first one)."""

    key: str
    amount: int
    seconds: int


class QuotaExceeded(RuntimeError):
    """A publish over its Quota: nothing was stored or sent; `retry_after` seconds until the window ends."""

    def __init__(self, quota: Quota, retry_after: int) -> None:
        super().__init__(f"{quota.amount} per {quota.seconds} s")
        self.quota = quota
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class Published:
    """What a publish did: ids in input order, and which of them an earlier publish had made."""

    ids: list[str | None]
    replayed: bool = False  # the request's key was seen: every id is the earlier answer's, nothing published
    repeats: frozenset[int] = frozenset()  # positions whose event's own key was seen (skipped)

    def fresh(self, drafts: Sequence[Draft]) -> list[Draft]:
        """The drafts this call actually published."""
        if self.replayed:
            return []
        if not self.repeats:
            return list(drafts)
        return [d for i, d in enumerate(drafts) if i not in self.repeats]


class IdempotencyConflict(RuntimeError):
    """A key seen within the window with other content; nothing was stored. `index`: None for
    the request's key, else the position of the event whose own key it is."""

    def __init__(self, index: int | None) -> None:
        where = "the request's key" if index is None else f"events[{index}].idempotency_key"
        super().__init__(f"{where} was used for different content within the idempotency window")
        self.index = index


class EventBus(Protocol):
    """Publish, replay and live delivery of events; nothing else (shared state: state/, control: control/)."""

    hub: Hub

    def start(self) -> None:
        """Start background work (the live-feed reader); idempotent."""

    def close(self) -> None:
        """Stop background work and release connections."""

    def publish(self, drafts: Sequence[Draft], quotas: Sequence[Quota] = ()) -> list[str | None]:
        """Store durable drafts and broadcast all of them atomically; cursors in input order (None: ephemeral).

        Each of `quotas` is counted in the same atomic step, once per call: over any of
        them, nothing is published and QuotaExceeded is raised (the publish rate limit
        costs no round trip of its own).
        Events' own keys (Draft.key) are honoured as by `publish_once` with an empty scope.
        """

    def publish_once(
        self, drafts: Sequence[Draft], scope: str, key: str | None = None, quotas: Sequence[Quota] = (),
    ) -> Published:
        """`publish`, exactly once per idempotency key within the bus' window (IDEMPOTENCY_WINDOW).

        Keys are scoped: (scope, key) pairs of different scopes never meet. `key`
        covers the whole call: seen with the same content (channel, type, data of
        every draft, in order; Draft.fingerprint), the answer is the first call's
        ids with `replayed` set, and nothing is published, stored or counted
        against `quotas` (it is checked before them, so the retry of a call that
        went through is never rate-limited). A draft's own key covers that draft:
        seen with the same content, it is skipped and its position gets the
        original id (`repeats`); the others are published. A key seen with other
        content raises IdempotencyConflict and nothing is published. All of this
        is one atomic step with the publish itself: of two racing duplicates one
        publishes and the other gets its ids. Keys expire `window` seconds after
        the publish that set them.
        """

    def attach(self, sub: Subscriber, channels: Sequence[str]) -> None:
        """Feed `sub` live events of `channels`; returns once the feed covers them (BusUnavailable otherwise)."""

    def detach(self, sub: Subscriber, channels: Sequence[str] | None = None) -> None:
        """Stop feeding `sub` (all channels by default); releases upstream subscriptions no one needs."""

    def replay(self, channels: Sequence[str], after: Cursor | None, limit: int) -> Replay:
        """Durable events after `after` on `channels` (at most `limit` per channel) and the head cursor."""

    def head(self) -> Cursor:
        """The newest cursor: where a client with no cursor starts."""

    def parse_cursor(self, raw: str) -> Cursor:
        """A client's cursor (Last-Event-ID, /poll's) in the form `replay` reads; CursorError if malformed.
        One Redis and memory: cursor.parse; Redis Cluster: a vector of shard positions (shard_cursor.py)."""

    def health(self) -> str | None:
        """None when ready to serve, else the reason (for /readyz)."""
