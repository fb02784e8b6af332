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
from itertools import islice, repeat
from operator import call

from .subscriber import Frame, Subscriber
from .ticker import Ticker
from .wire import SENT, chunk

__all__ = ["Frame", "Hub", "Subscriber"]  # the bus backends import the hub's vocabulary from here


class Hub:
    """Channel → local subscribers; `on_first`/`on_last` tell the bus to (un)subscribe upstream.

    Its indexes are fan-out's, not a registry of streams (streams.py has that):
    every attached sink, long-polls waiting for an event included.

    The lane: a channel's streams that are idle on a direct transport (nothing
    queued, no write in progress, past any replay overlap: `Subscriber.idle`)
    are also kept as their sockets' `send`, so an event reaches all of them in
    one `map` that runs in C (no Python frame per stream); the others get
    `offer` as before. Why: at 1,000 streams on a channel the Python around
    each delivery (two calls and their checks) was about a tenth of its CPU,
    the kernel's send most of the rest (docs/PERFORMANCE.md). A stream joins
    the lane when the hub wrote to it directly and it is idle; it leaves, before
    anything could make a send around it wrong, on every change of that state
    (`Subscriber.leave_lanes`). What the lane sent is counted per channel and
    settled into the stream's `sent` and `last_write` when it leaves or is read.
    """

    def __init__(
        self,
        on_first: Callable[[list[str]], None] | None = None,
        on_last: Callable[[list[str]], None] | None = None,
        on_dispatch: Callable[[bytes, int, int], None] | None = None,
    ) -> None:
        self._channels: dict[str, set[Subscriber]] = {}
        self._lanes: dict[str, dict[Subscriber, Callable[[bytes], int]]] = {}  # idle streams: their send
        self._slow: dict[str, set[Subscriber]] = {}  # the channel's other streams: offered one by one
        self._tally: dict[str, int] = {}  # events the lane sent, per channel (Subscriber.lanes: at entry)
        self._lane_time: dict[str, float] = {}  # when the lane last sent
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
        sub.hub = self
        for name in channels:
            subs = self._channels.get(name)
            if subs is None:
                subs = self._channels[name] = set()
                self._lanes[name], self._slow[name], self._tally[name] = {}, set(), 0
                fresh.append(name)
            if sub not in subs:
                subs.add(sub)
                if sub.lanes is not None:  # an idle stream in the lane of its other channels
                    self._lanes[name][sub] = sub.out.lane  # type: ignore[assignment]
                    sub.lanes[name] = self._tally[name]
                else:
                    self._slow[name].add(sub)
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
            if sub.lanes is not None and name in sub.lanes:
                self._settle(sub, name, sub.lanes.pop(name))
                del self._lanes[name][sub]
                if not sub.lanes:
                    sub.lanes = None
            subs.discard(sub)
            self._slow[name].discard(sub)
            if not subs:
                del self._channels[name], self._lanes[name], self._slow[name], self._tally[name]
                self._lane_time.pop(name, None)
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
        now = time.monotonic()  # one clock reading for every stream's last_write
        written = 0
        joining = []
        for sub in self._slow[channel]:  # first: a stream the lane fails below is offered the frame there
            if sub.offer(seq, frame, now) == SENT:
                written += 1
                if sub.idle():
                    joining.append(sub)
        if self._lanes[channel]:
            written += self._send_lane(channel, frame, ((seq, frame),), now)
        for sub in joining:  # after the lane's send: each had this frame already
            self._join(sub)
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
        now = time.monotonic()
        written = 0
        joining = []
        for sub in self._slow[channel]:  # before the lane, as in dispatch
            if not (sub.floor and first <= sub.floor) and sub.write_now(joined, count) == SENT:
                written += count
                sub.floor = 0  # the run was past the replay overlap (the feed's seqs only grow), as in offer
                if sub.idle():
                    joining.append(sub)
            else:  # queued one by one: the loop counts and filters frames, not runs
                for seq, frame in frames:
                    sub.offer(seq, frame)
        if self._lanes[channel]:
            written += self._send_lane(channel, joined, frames, now)
        for sub in joining:
            self._join(sub)
        if self.on_dispatch is not None:
            for _, frame in frames[:-1]:
                self.on_dispatch(frame, len(subs), 0)
            self.on_dispatch(frames[-1][1], len(subs), written)
        return len(subs)

    def _send_lane(self, channel: str, data: bytes, frames: Iterable[Frame], now: float) -> int:
        """Send `data` (the events `frames`, joined) to every stream in the channel's lane, in C;
        then settle what did not go whole. Returns the deliveries written (events × streams).

        A send that raised (a full socket, a peer gone) took nothing: that stream
        leaves the lane first and is offered the frames one by one (it queues them,
        or ends). A partial send counts as sent: the stream keeps the rest and its
        loop is woken to write it, as in `Subscriber.offer`.
        """
        lane = self._lanes[channel]
        framed = chunk(data)
        size = len(framed)
        done: list[int] = []
        failed: list[Subscriber] = []
        streams: list[Subscriber] | None = None  # the lane's order, copied only off the usual path
        try:
            done.extend(map(call, lane.values(), repeat(framed)))
        except OSError:  # `done` holds the sends before the one that raised: go on after it, in C
            streams, sends = list(lane), list(lane.values())
            while True:
                failed.append(streams[len(done)])
                done.append(0)
                try:
                    done.extend(map(call, islice(sends, len(done), None), repeat(framed)))
                    break
                except OSError:
                    continue
        partial = []
        if done.count(size) != len(done):
            streams = streams or list(lane)
            partial = [(streams[i], sent) for i, sent in enumerate(done) if 0 < sent < size]
        for sub in failed:
            sub.leave_lanes()  # before the tally counts this event
        events = len(frames)  # type: ignore[arg-type]
        self._tally[channel] += events
        self._lane_time[channel] = now
        for sub, sent in partial:
            sub.keep_rest(framed[sent:])
        for sub in failed:
            for seq, frame in frames:
                sub.offer(seq, frame, now)
        return (len(done) - len(failed)) * events

    def _join(self, sub: Subscriber) -> None:
        """Put an idle stream in the lanes of all its channels (the caller checked `idle`)."""
        send = sub.out.lane
        entries = {}
        for name in sub.channels:
            lane = self._lanes.get(name)
            if lane is not None:  # else not added yet: Hub.add puts it in the lane
                self._slow[name].discard(sub)
                lane[sub] = send  # type: ignore[assignment]
                entries[name] = self._tally[name]
        sub.lanes = entries or None

    def leave(self, sub: Subscriber) -> None:
        """Take `sub` out of every lane, settling what the lanes sent it (Subscriber.leave_lanes)."""
        entries, sub.lanes = sub.lanes, None
        for name, at in entries.items():  # type: ignore[union-attr]
            self._settle(sub, name, at)
            del self._lanes[name][sub]
            self._slow[name].add(sub)

    def settle(self, sub: Subscriber) -> None:
        """Count what the lanes sent `sub` into its `sent` and `last_write`; it stays in them."""
        entries = sub.lanes
        for name, at in entries.items():  # type: ignore[union-attr]
            self._settle(sub, name, at)
            entries[name] = self._tally[name]  # type: ignore[index]

    def pending(self, sub: Subscriber) -> int:
        """Events the lanes sent `sub` not yet in its `sent`."""
        lanes = sub.lanes
        return 0 if lanes is None else sum(self._tally[name] - at for name, at in lanes.items())

    def _settle(self, sub: Subscriber, name: str, at: int) -> None:
        sent = self._tally[name] - at
        if sent:
            sub._sent += sent
            sub.last_write = max(sub.last_write, self._lane_time[name])

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

    def in_lane(self, channel: str) -> int:
        """How many of `channel`'s local subscribers are in its lane (tests, diagnostics)."""
        return len(self._lanes.get(channel, ()))

    def count(self, channel: str) -> int:
        """How many local subscribers `channel` has."""
        return len(self._channels.get(channel, ()))

    def channels(self) -> list[str]:
        """Channels with at least one local subscriber: what the upstream feed must cover."""
        return list(self._channels)
