"""One background loop shape for every periodic job of a process (refreshers, sweeper, sampler, ticker).

Each job runs `work` every `interval` seconds in its own greenlet; a failure
is reported and the next round retries (a Redis blip must not end refreshing
for the life of the worker). `stop()` ends the greenlet, so an app can be
closed without leaving loops behind (chatgenius.close).

The rounds of every job of a process fall on one grid (multiples of their
interval, shifted by a phase of the process's own), so jobs of the same or
dividing intervals wake the process once between them, not once each. Why: an
idle worker's cost was mostly its wake-ups (about ten a second from five
jobs), each a return from epoll and a cold run through the loop; at 10 events/s
to 1,000 streams that was several per cent of the CPU per delivery
(docs/PERFORMANCE.md). The phase differs between processes (it comes from the
host name and pid), so the workers of a deployment do not all call Redis in the same
millisecond.
"""

from __future__ import annotations

import logging
import os
import socket
import zlib
from collections.abc import Callable

import gevent
from gevent.hub import get_hub

from . import log

OnError = Callable[[Exception], None]


def warn(event: str, **fields: Callable[[], object]) -> OnError:
    """Report a failed round as the log event `event` (warning) with its error and `fields` read then."""

    def report(exc: Exception) -> None:
        log.event(event, logging.WARNING, error=repr(exc), **{k: f() for k, f in fields.items()})

    return report


def until_next(interval: float, now: float, phase: float) -> float:
    """Seconds from `now` to the next point `phase + k * interval` of the grid, at least 1 % of
    `interval` away (a timer that fired a hair early must not run its job twice)."""
    due = now + interval - (now - phase) % interval
    if due - now < interval / 100:
        due += interval
    return due - now


def phase_of(host: str, pid: int) -> float:
    """A process's shift of the grid, in seconds within [0, 1): from its host name and pid, so each
    gunicorn worker (and the same pid in containers on other hosts) has its own."""
    return zlib.crc32(f"{host} {pid}".encode()) / 2**32


class _Phase:
    """This process's phase, worked out once (again in a forked child: gunicorn's workers), not
    per round: every job of the process shares it."""

    def __init__(self) -> None:
        self.reset()
        os.register_at_fork(after_in_child=self.reset)

    def reset(self) -> None:
        self.value = phase_of(socket.gethostname(), os.getpid())


_phase = _Phase()


def sleep_to_grid(interval: float) -> None:
    """Sleep until this process's next grid point of `interval` (see the module's docstring)."""
    # The loop's own clock, read once per turn, and a timer started on it as it is: gevent.sleep
    # would read the clock again first (update_now), putting the timer off the grid by
    # whatever ran in this turn before.
    hub = get_hub()
    timer = hub.loop.timer(until_next(interval, hub.loop.now(), _phase.value))
    try:
        hub.wait(timer)
    finally:
        timer.close()


class Every:
    """`work()` every `interval` s in one greenlet, from start() until stop(); both idempotent."""

    __slots__ = ("interval", "work", "on_error", "_greenlet")

    def __init__(self, interval: float, work: Callable[[], object], on_error: OnError) -> None:
        if not interval > 0:
            raise ValueError(f"a periodic job needs an interval above 0, got {interval!r}")
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
            sleep_to_grid(self.interval)
            try:
                self.work()
            except Exception as exc:
                self.on_error(exc)
