"""The in-process bus: the embedded default (`python app.py`), one process only.

Same cursor semantics as the Redis bus (see EventBus): one global sequence,
an epoch per process lifetime, bounded per-channel history with a trim
watermark, so the contract suite runs unchanged against both.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Sequence

from ..cursor import Cursor, new_epoch, parse
from ..events import Draft, digest, envelope_json
from ..fanout import Hub, Subscriber
from ..sse import durable_frame, ephemeral_frame
from .base import IdempotencyConflict, Published, Quota, QuotaExceeded, Record, Replay

_Key = tuple[str, str, str]  # ("r" request | "e" event, scope, key)


class _History:
    """One channel's retained events and the highest seq that fell out of them."""

    __slots__ = ("items", "trimmed", "last")

    def __init__(self, maxlen: int) -> None:
        self.items: deque[tuple[float, Record]] = deque(maxlen=maxlen)
        self.trimmed = 0
        self.last = 0


class MemoryBus:
    """See EventBus; history lives in dicts of deques, the live feed is a direct call."""

    def __init__(
        self, maxlen: int, ttl: float, clock: Callable[[], float] = time.monotonic, idempotency_window: float = 600,
    ) -> None:
        self.hub = Hub()
        self.epoch = new_epoch()
        self._seq = 0
        self._maxlen = maxlen
        self._ttl = ttl
        self._clock = clock
        self._windows: dict[tuple[str, int], tuple[int, float]] = {}  # (quota key, seconds) -> (count, ends)
        self._window = idempotency_window
        self._keys: dict[_Key, tuple[str, tuple[str | None, ...], float]] = {}  # -> (fingerprint, ids, expires)
        self._history: dict[str, _History] = {}

    def start(self) -> None:
        """See EventBus.start: nothing to start, publish delivers in the caller's greenlet."""
        pass

    def close(self) -> None:
        """See EventBus.close: ends every local stream (no connections to close)."""
        self.hub.end_all("shutdown", lambda sub: None)

    def publish(self, drafts: Sequence[Draft], quotas: Sequence[Quota] = ()) -> list[str | None]:
        """See EventBus.publish."""
        return self.publish_once(drafts, "", None, quotas).ids

    def publish_once(
        self, drafts: Sequence[Draft], scope: str, key: str | None = None, quotas: Sequence[Quota] = (),
    ) -> Published:
        """See EventBus.publish_once: keys are checked and recorded before any frame is dispatched."""
        now = self._clock()
        seen: dict[int, str | None] = {}
        owned: dict[int, tuple[_Key, str]] = {}
        if key is not None:
            hit = self._recall(("r", scope, key), now)
            if hit is not None:
                if hit[0] != digest(drafts):
                    raise IdempotencyConflict(None)
                return Published(list(hit[1]), replayed=True)
        for i, d in enumerate(drafts):
            if d.key is not None:
                hit = self._recall(("e", scope, d.key), now)
                if hit is None:
                    owned[i] = (("e", scope, d.key), d.fingerprint)
                elif hit[0] == d.fingerprint:
                    seen[i] = hit[1][0]
                else:
                    raise IdempotencyConflict(i)
        if quotas:
            self._count(quotas, now)
        out: list[str | None] = []
        frames: list[tuple[str, int, bytes]] = []
        for i, d in enumerate(drafts):
            if i in seen:
                out.append(seen[i])
                continue
            if not d.durable:
                frames.append((d.channel, 0, ephemeral_frame(d.type, envelope_json(None, d.body))))
                out.append(None)
            else:
                self._seq += 1
                cursor = f"{self.epoch}-{self._seq}"
                record = Record(self._seq, cursor, d.type, envelope_json(cursor, d.body))
                hist = self._history.get(d.channel)
                if hist is None:
                    hist = self._history[d.channel] = _History(self._maxlen)
                if len(hist.items) == self._maxlen:
                    hist.trimmed = hist.items[0][1].seq
                hist.items.append((now, record))
                hist.last = self._seq
                frames.append((d.channel, self._seq, durable_frame(cursor, d.type, record.envelope)))
                out.append(cursor)
            if i in owned:
                self._remember(*owned[i], (out[-1],), now)
        if key is not None:
            self._remember(("r", scope, key), digest(drafts), tuple(out), now)
        for channel, seq, frame in frames:
            self.hub.dispatch(channel, seq, frame)
        return Published(out, repeats=frozenset(seen))

    def _recall(self, key: _Key, now: float) -> tuple[str, tuple[str | None, ...], float] | None:
        entry = self._keys.get(key)
        return entry if entry is not None and entry[2] > now else None

    def _remember(self, key: _Key, fingerprint: str, ids: tuple[str | None, ...], now: float) -> None:
        self._keys[key] = (fingerprint, ids, now + self._window)
        if len(self._keys) > 4 * 65536:  # forget expired keys now and then: bounded memory
            self._keys = {k: v for k, v in self._keys.items() if v[2] > now}

    def _count(self, quotas: Sequence[Quota], now: float) -> None:
        """Count one publish against every quota, or none of them if one is full (QuotaExceeded)."""
        windows = []
        for q in quotas:
            count, ends = self._windows.get((q.key, q.seconds), (0, 0.0))
            if now >= ends:
                count, ends = 0, now + q.seconds
            if count >= q.amount:
                raise QuotaExceeded(q, max(1, math.ceil(ends - now)))
            windows.append(((q.key, q.seconds), count + 1, ends))
        for key, count, ends in windows:
            self._windows[key] = (count, ends)
        if len(self._windows) > 4 * 65536:  # forget ended windows now and then: bounded memory
            self._windows = {k: v for k, v in self._windows.items() if v[1] > now}

    def attach(self, sub: Subscriber, channels: Sequence[str]) -> None:
        """See EventBus.attach: the in-process feed is covering at once."""
        self.hub.add(sub, channels)

    def detach(self, sub: Subscriber, channels: Sequence[str] | None = None) -> None:
        """See EventBus.detach."""
        self.hub.remove(sub, channels)

    def _expire(self, hist: _History) -> None:
        cutoff = self._clock() - self._ttl
        while hist.items and hist.items[0][0] < cutoff:
            hist.trimmed = hist.items.popleft()[1].seq

    def replay(self, channels: Sequence[str], after: Cursor | None, limit: int) -> Replay:
        """See EventBus.replay."""
        head = self.head()
        if after is None:
            return Replay(head=head)
        stale = after.epoch != self.epoch or after.seq > self._seq
        if stale:  # predates everything stored: reset all, replay the whole epoch (see RedisBus.replay)
            after = Cursor(self.epoch, 0)
        result = Replay(head=head)
        for name in channels:
            hist = self._history.get(name)
            if hist is None:
                continue
            self._expire(hist)
            if hist.trimmed > after.seq:
                result.reset.append(name)
                continue
            picked = [r for _, r in hist.items if r.seq > after.seq]
            if len(picked) > limit:
                result.reset.append(name)
                continue
            result.events.extend(picked)
        result.events.sort(key=lambda r: r.seq)
        if stale:
            result.reset = list(channels)
        return result

    parse_cursor = staticmethod(parse)  # see EventBus.parse_cursor

    def head(self) -> Cursor:
        """See EventBus.head."""
        return Cursor(self.epoch, self._seq)

    def health(self) -> str | None:
        """See EventBus.health: always healthy, there is no connection to lose."""
        return None
