"""Telemetry: the service's hooks feed the metrics and the aggregated logs.

Nothing here is called from the code it observes by name: the factory wires
`Telemetry` in as a StreamObserver of the stream registry (streams.py), as
Realtime's `on_write` (every stream write) and publish observer, and as the
Hub's dispatch observer (`Hub.observe_dispatch`); every refused request reaches `refused` from web/observe.py with the code and reason
of its JSON error, which is how auth failures are counted wherever they arise
(bearer, ticket). Per event per worker it parses the envelope's `ts` once (reader
lag); per stream write it adds to a plain integer and, for one write in
`stride`, observes the latency of the write's oldest event (an event the bus
reader wrote to idle streams itself counts as one write): under a fan-out of
thousands of writes a second a metric update per write would cost a good part
of the write itself. One greenlet per worker flushes those integers into the
counters every second, adjusts `stride` so at most LATENCY_SAMPLES
observations a second are made (systematic, so a burst is sampled from its
first write to its last), samples what has no event of its own (memory, the bus
reader's state), and writes one `broadcast` summary log line per interval
instead of one line per event.
"""

from __future__ import annotations

import logging
import os
import resource
import time
from collections.abc import Callable, Sequence

from . import heap, log
from .background import Every
from .bus.base import EventBus
from .events import Draft
from .metrics import PUBLISH_PATHS, Metrics, collect, snapshot
from .stream import StreamSession
from .streams import Streams

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
# Broadcast latency observations per second per worker, at most: enough for a p99 each minute
# (12,000 a minute), and a Histogram.observe (a lock and two mmap'd values under gunicorn) costs
# about as much as reading an event off the feed.
LATENCY_SAMPLES = 200


def frame_ts(frame: bytes) -> float | None:
    """The publish time of an event frame: the envelope's last field is `"ts":<seconds>}`."""
    at = frame.rfind(b'"ts":')
    if at < 0:
        return None
    end = frame.find(b"}", at)
    try:
        return float(frame[at + 5 : end])
    except ValueError:
        return None


GREENLET_COUNT_INTERVAL = 60.0


def count_greenlets() -> int:
    """Live greenlets in this process, those frozen by gc.freeze() included (heap.py); a gc scan, hence once a minute."""
    return heap.count_greenlets()


def rss_bytes() -> float:
    """Resident memory now (Linux /proc), else the peak the kernel reports."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return float(int(f.read().split()[1]) * _PAGE)
    except (OSError, IndexError, ValueError):
        return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)


def refusal(status: int, code: str) -> tuple[str, str] | None:
    """("rejection" | "error", reason) for an HTTP error answer; None for what is neither."""
    if status == 401:
        return "rejection", "unauthorized"
    if status == 403:
        return "rejection", "forbidden"
    if status == 429:
        return "rejection", "connection_limit" if "connection" in code else "rate_limit"
    if 400 <= status < 500:
        return "rejection", "bad_input"
    if status == 503 and code != "bus_unavailable":
        return "rejection", "unavailable"  # SSE switched off, worker draining
    if status == 503:
        return "error", "bus_unavailable"
    if status >= 500:
        return "error", "internal"
    return None


class Telemetry:
    """One per app: metrics plus the interval counters of the `broadcast` log line (a StreamObserver)."""

    def __init__(
        self,
        bus: EventBus,
        streams: Streams,
        metrics: Metrics,
        summary_interval: float = 10.0,
        sample_interval: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.bus = bus
        self.streams = streams
        self.metrics = metrics
        self.summary_interval = summary_interval
        self.sample_interval = sample_interval
        self._clock = clock
        self._lag = 0.0  # worst reader lag since the last sample
        self._unflushed = 0  # live frames written since the last flush into the counter
        self._writes = 0
        self._publish_requests = dict.fromkeys(PUBLISH_PATHS, 0)  # since the last flush
        self._writes_seen = 0
        self._stride = 1
        self._reconnects_seen = 0
        self._greenlets_at = float("-inf")
        self._sampler = Every(sample_interval, self.sample, _sample_failed)
        # The `broadcast` summary's counters, reset at each line.
        self._by_type: dict[str, int] = {}
        self._dispatched = 0
        self._delivered = 0
        self._direct = 0  # of _delivered, written by the bus reader itself (fanout.Hub)
        self._max_lag = 0.0
        self._since = time.monotonic()

    # -- hooks -----------------------------------------------------------------------
    def stream_opened(self, session: StreamSession) -> None:
        """See StreamObserver.stream_opened: connection, reconnection and replay counters."""
        m = self.metrics
        m.connections.inc()
        m.opened.inc()
        m.users.set(self.streams.users)
        if session.sub.resumed:
            replayed = len(session.replay.events)
            m.reconnections.inc()
            m.replay_size.observe(replayed)
            if replayed:
                m.delivered_replay.inc(replayed)
        if session.replay.reset:
            m.resets.inc()

    def stream_wrote(self, frames: list[bytes]) -> None:
        """After a write of live frames to one stream (the hot path): count them, time the oldest now and then."""
        self._unflushed += len(frames)
        self._delivered += len(frames)
        self._writes += 1
        if self._writes % self._stride == 0:
            ts = frame_ts(frames[0])
            if ts is not None:
                self.metrics.latency.observe(max(0.0, self._clock() - ts))

    def publish_request(self, path: str) -> None:
        """A POST /events answered by `path` (one of PUBLISH_PATHS); counted into the metric at the next flush."""
        self._publish_requests[path] += 1

    def flush(self) -> None:
        """Add the live deliveries and publish requests counted since the last flush to their counters (cheap per-event counting)."""
        if self._unflushed:
            self.metrics.delivered_live.inc(self._unflushed)
            self._unflushed = 0
        for path, n in self._publish_requests.items():
            if n:
                self.metrics.publish_requests[path].inc(n)
                self._publish_requests[path] = 0

    def stream_closed(self, session: StreamSession) -> None:
        """See StreamObserver.stream_closed: close reason, duration, slow consumers, missed heartbeats."""
        m = self.metrics
        sub = session.sub
        reason = session.stats.end_reason
        m.connections.dec()
        m.closed[reason].inc()
        m.duration.observe(max(0.0, self._clock() - sub.opened))
        if reason == "slow_consumer":
            m.slow_consumers.inc()
        if session.stats.heartbeat_pending:
            m.heartbeat_failures.inc()
        self.flush()  # a draining worker's last writes are counted before it exits
        m.users.set(self.streams.users)

    def events_published(self, drafts: Sequence[Draft]) -> None:
        """Count published events by type (the counter and the `broadcast` summary)."""
        counts: dict[str, int] = {}
        for d in drafts:
            counts[d.type] = counts.get(d.type, 0) + 1
        for etype, n in counts.items():
            self.metrics.published[etype].inc(n)
            self._by_type[etype] = self._by_type.get(etype, 0) + n

    def dispatched(self, frame: bytes, subscribers: int, written: int = 0) -> None:
        """Once per event per worker, as the bus hands it to local streams: how far behind the reader is.

        `written` frames went straight to idle streams' sockets (fanout.Hub): they are
        counted here, and their latency sampled once per event, not per stream.
        """
        self._dispatched += 1
        ts = frame_ts(frame)
        if ts is None:
            lag = None
        else:
            lag = self._clock() - ts
            if lag > self._lag:
                self._lag = lag
        if written:
            self._unflushed += written
            self._delivered += written
            self._direct += written
            self._writes += 1  # one timing for all its direct writes, within the same budget as stream_wrote's
            if lag is not None and self._writes % self._stride == 0:
                self.metrics.latency.observe(max(0.0, lag))

    def refused(self, status: int, code: str, auth_reason: str = "") -> str | None:
        """Count an HTTP error answer as a rejection or an error (and a 401 as an auth failure); returns its reason."""
        if status == 401 or code == "token_in_query":
            self.metrics.auth_failures[auth_reason or code or "unknown"].inc()
        kind = refusal(status, code)
        if kind is None:
            return None
        (self.metrics.rejections if kind[0] == "rejection" else self.metrics.errors)[kind[1]].inc()
        return kind[1]

    def error(self, kind: str) -> None:
        """Count an internal error of `kind` (chatgenius_errors_total)."""
        self.metrics.errors[kind].inc()

    def stream_failed(self, exc: BaseException) -> None:
        """A stream's loop raised (a bug, not a client leaving); the loop bound its request id."""
        self.error("stream")
        log.event("error", logging.ERROR, where="stream", error=repr(exc), exc_info=exc)

    def set_capacity(self, worker_connections: int) -> None:
        """Export the worker's stream capacity (WORKER_CONNECTIONS), the gauge's ceiling."""
        self.metrics.capacity.set(worker_connections)

    # -- reading -------------------------------------------------------------------------
    def stats(self) -> dict:
        """Every worker's numbers summed, as /metrics has them (GET /admin/stats)."""
        self.flush()
        out = snapshot(collect(self.metrics))
        out["ts"] = round(self._clock(), 3)
        return out

    # -- the sampler ---------------------------------------------------------------------
    def start(self) -> None:
        """Take one sample now, then start the sampler greenlet."""
        self.sample()
        self._sampler.start()

    def stop(self) -> None:
        """Stop the sampler greenlet."""
        self._sampler.stop()

    def sample(self) -> None:
        """Refresh the gauges (memory, greenlets, reader state, lag) and write the `broadcast` line when due."""
        m = self.metrics
        self.flush()
        writes = self._writes - self._writes_seen
        self._writes_seen = self._writes
        self._stride = max(1, int(writes / (LATENCY_SAMPLES * self.sample_interval)))
        m.memory.set(rss_bytes())
        if time.monotonic() - self._greenlets_at >= GREENLET_COUNT_INTERVAL:
            self._greenlets_at = time.monotonic()
            m.greenlets.set(count_greenlets())
        m.reader_up.set(1 if self.bus.health() is None else 0)
        m.reader_lag.set(max(0.0, self._lag))
        self._max_lag = max(self._max_lag, self._lag)
        self._lag = 0.0
        reconnects = int(getattr(self.bus, "reader_reconnects", 0))
        if reconnects > self._reconnects_seen:
            m.reader_reconnects.inc(reconnects - self._reconnects_seen)
            m.errors["bus_reader"].inc(reconnects - self._reconnects_seen)
        self._reconnects_seen = reconnects
        if time.monotonic() - self._since >= self.summary_interval:
            self.summarize()

    def summarize(self) -> None:
        """One `broadcast` line for the interval, none when nothing moved (never a line per event: the log would grow with the traffic)."""
        now = time.monotonic()
        if self._by_type or self._dispatched or self._delivered:
            log.event(
                "broadcast",
                published=sum(self._by_type.values()),
                by_type=dict(self._by_type),
                dispatched=self._dispatched,
                delivered=self._delivered,
                direct=self._direct,
                max_lag=round(self._max_lag, 4),
                streams=len(self.streams),
                interval=round(now - self._since, 3),
            )
        self._by_type, self._dispatched, self._delivered, self._direct, self._max_lag = {}, 0, 0, 0, 0.0
        self._since = now


def _sample_failed(exc: Exception) -> None:
    """A sampling bug must not end sampling: logged, and the next round runs."""
    logging.getLogger(__name__).error("telemetry sample failed", exc_info=exc)
