"""The process' one clock for streams: wakes each subscriber whose heartbeat or deadline is due.

Why one ticker rather than a timeout per wait: a wait with a timeout costs a
gevent Timeout (a timer started and cancelled) per wake-up, ~8 % of a worker
at 10 events/s x 1000 streams in the profile (docs/PERFORMANCE.md). One
ticker per process replaces them all; heartbeats and deadlines become late by
at most its interval. Subscribers say when they want waking in `due`
(stream.arm); the ticker reads the Hub's subscribers, it keeps none itself.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping

from .background import Every
from .subscriber import Subscriber


class Ticker:
    """Every `interval` s, wake the subscribers in `subscribers` whose `due` time has passed."""

    def __init__(self, subscribers: Mapping[str, Subscriber], interval: float) -> None:
        self._subscribers = subscribers
        self.loop = Every(interval, self.tick, _tick_failed)

    def tick(self) -> None:
        """Wake every stream whose heartbeat or deadline is due; the stream sets its next due time."""
        now = time.monotonic()
        for sub in list(self._subscribers.values()):
            if sub.due <= now:
                sub.due = float("inf")
                sub._wake.set()


def _tick_failed(exc: Exception) -> None:
    """A bug here must not stop every heartbeat of the process: logged, the next tick runs."""
    logging.getLogger("chatgenius.fanout").error("hub ticker failed", exc_info=exc)
