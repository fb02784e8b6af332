"""In-process fan-out: which local streams hold which channel.

Both bus backends deliver through one `Hub`: the bus turns an event into its
wire frame once, and the hub hands the same bytes to every local subscriber of
the channel (subscriber.py: each connection's sink, which sends now or
queues). The hub knows nothing of HTTP framing: the transport frames what it
sends. Its ticker (ticker.py) wakes streams due for a heartbeat or deadline.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from .subscriber import Frame, Subscriber
from .ticker import Ticker
from .wire import SENT

__all__ = ["Frame", "Hub", "Subscriber"]  # the bus backends import the hub's vocabulary from here


class Hub:
    """Channel → local subscribers; `on_first`/`on_last` tell the bus to (un)subscribe upstream.

    Its indexes are fan-out's, not a registry of streams (streams.py has that):
    every attached sink, long-polls waiting for an event included.
    """

    def __init__(
        self,
        on_first: Callable[[list[str]], None] | None = None,
        on_last: Callable[[list[str]], None] | None = None,
        on_dispatch: Callable[[bytes, int, int], None] | None = None,
    ) -> None:
        self._channels: dict[str, set[Subscriber]] = {}
        self.subscribers: dict[str, Subscriber] = {}
        self._on_first = on_first
        self._on_last = on_last
        # Called once per dispatched event with its frame, local subscriber count and how many
        # of them the hub wrote to directly (telemetry; set once: observe_dispatch).
        self.on_dispatch: Callable[[bytes, int, int], None] | None = on_dispatch
        self._ticker: Ticker | None = None

    def observe_dispatch(self, observer: Callable[[bytes, int, int], None]) -> None:
        """Make `observer` the one dispatch observer (the hot path: one call per event, no list)."""
        if self.on_dispatch is not None:
            raise RuntimeError("the hub's dispatch observer is already set")
        self.on_dispatch = observer

    def add(self, sub: Subscriber, channels: Iterable[str]) -> None:
        """Register `sub` on `channels`; blocks while the upstream feed confirms new ones."""
        fresh = []
        for name in channels:
            subs = self._channels.get(name)
            if subs is None:
                subs = self._channels[name] = set()
                fresh.append(name)
            subs.add(sub)
            sub.channels.add(name)
        self.subscribers[sub.id] = sub
        if fresh and self._on_first is not None:
            try:
                self._on_first(fresh)
            except BaseException:
                self.remove(sub, list(sub.channels))
                raise

    def remove(self, sub: Subscriber, channels: Iterable[str] | None = None) -> None:
        """Drop `sub` from `channels` (default: all of them)."""
        names = list(sub.channels if channels is None else channels)
        gone = []
        for name in names:
            subs = self._channels.get(name)
            sub.channels.discard(name)
            if subs is None:
                continue
            subs.discard(sub)
            if not subs:
                del self._channels[name]
                gone.append(name)
        if not sub.channels or channels is None:
            self.subscribers.pop(sub.id, None)
        if gone and self._on_last is not None:
            self._on_last(gone)

    def dispatch(self, channel: str, seq: int, frame: bytes) -> int:
        """Hand one encoded frame to every local subscriber of `channel`."""
        subs = self._channels.get(channel)
        if not subs:
            return 0
        written = 0
        now = time.monotonic()  # one clock reading for every stream's last_write
        for sub in subs:
            if sub.offer(seq, frame, now) == SENT:
                written += 1
        if self.on_dispatch is not None:
            self.on_dispatch(frame, len(subs), written)
        return len(subs)

    def dispatch_run(self, channel: str, frames: list[Frame]) -> int:
        """Hand consecutive events of one channel to its subscribers, joined into one write each.

        Why: when the reader finds several events already waiting (a burst, or it
        fell behind), one send of all of them per stream costs about what one
        event costs; an event at a time would cost a send per event per stream.
        Order is kept: the run is consecutive in the feed. A stream still before
        its transport or inside its replay overlap gets the frames one by one.
        """
        if len(frames) == 1:
            return self.dispatch(channel, *frames[0])
        subs = self._channels.get(channel)
        if not subs:
            return 0
        first = frames[0][0]
        joined = b"".join(f for _, f in frames)
        count = len(frames)
        written = 0
        for sub in subs:
            if not (sub.floor and first <= sub.floor) and sub.write_now(joined, count) == SENT:
                written += count
            else:  # queued one by one: the loop counts and filters frames, not runs
                for seq, frame in frames:
                    sub.offer(seq, frame)
        if self.on_dispatch is not None:
            for _, frame in frames[:-1]:
                self.on_dispatch(frame, len(subs), 0)
            self.on_dispatch(frames[-1][1], len(subs), written)
        return len(subs)

    def end_all(self, reason: str, frame: Callable[[Subscriber], bytes | None]) -> int:
        """End every local subscriber (drain, flag off, feed lost)."""
        subs = list(self.subscribers.values())
        for sub in subs:
            sub.end(reason, frame(sub))
        return len(subs)

    def start_ticker(self, interval: float) -> None:
        """Wake subscribers whose `due` time passed, every `interval` s (ticker.py; idempotent)."""
        if self._ticker is None:
            self._ticker = Ticker(self.subscribers, interval)
        self._ticker.loop.start()

    def stop_ticker(self) -> None:
        """Stop the heartbeat/deadline ticker (one of the stops chatgenius.close runs)."""
        if self._ticker is not None:
            self._ticker.loop.stop()

    def count(self, channel: str) -> int:
        """How many local subscribers `channel` has."""
        return len(self._channels.get(channel, ()))

    def channels(self) -> list[str]:
        """Channels with at least one local subscriber: what the upstream feed must cover."""
        return list(self._channels)
