"""One background loop shape for every periodic job of a process (refreshers, sweeper, sampler, ticker).

Each job runs `work` every `interval` seconds in its own greenlet; a failure
is reported and the next round retries (a Redis blip must not end refreshing
for the life of the worker). `stop()` ends the greenlet, so an app can be
closed without leaving loops behind (chatgenius.close).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import gevent

from . import log

OnError = Callable[[Exception], None]


def warn(event: str, **fields: Callable[[], object]) -> OnError:
    """Report a failed round as the log event `event` (warning) with its error and `fields` read then."""

    def report(exc: Exception) -> None:
        log.event(event, logging.WARNING, error=repr(exc), **{k: f() for k, f in fields.items()})

    return report


class Every:
    """`work()` every `interval` s in one greenlet, from start() until stop(); both idempotent."""

    __slots__ = ("interval", "work", "on_error", "_greenlet")

    def __init__(self, interval: float, work: Callable[[], object], on_error: OnError) -> None:
        self.interval = interval
        self.work = work
        self.on_error = on_error
        self._greenlet: gevent.Greenlet | None = None

    @property
    def running(self) -> bool:
        """The loop's greenlet is alive (start() was called and stop() was not)."""
        return self._greenlet is not None and not self._greenlet.dead

    def start(self) -> Every:
        """Spawn the loop unless it runs already; returns self so a builder can start and keep it."""
        if not self.running:
            self._greenlet = gevent.spawn(self._run)
        return self

    def stop(self) -> None:
        """Kill the loop and wait up to 1 s, so close() leaves no greenlet of ours behind."""
        greenlet, self._greenlet = self._greenlet, None
        if greenlet is not None:
            greenlet.kill(block=True, timeout=1)

    def _run(self) -> None:
        while True:
            gevent.sleep(self.interval)
            try:
                self.work()
            except Exception as exc:
                self.on_error(exc)
