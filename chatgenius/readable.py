"""Waiting for one socket's bytes on gevent's loop, without gevent's per-wait objects.

Why: a gevent socket's `recv` first tries the system call (which fails with
EAGAIN when nothing has come yet: the usual case for a reply or a next request
just asked for), then makes a timeout object for the wait. On a path taken once
per event (a Redis reply, a publisher's next request) that was measurable
(docs/PERFORMANCE.md). Here one I/O watcher lives as long as the socket and
one repeating timer per timeout value is reused; the caller reads the socket
itself once it is readable.
"""

from __future__ import annotations

from gevent.hub import Waiter, get_hub


class Readable:
    """`wait(timeout)`: True once the socket `fileno` is readable, False after `timeout` s (None: no limit)."""

    __slots__ = ("_hub", "_io", "_timers")

    def __init__(self, fileno: int) -> None:
        self._hub = get_hub()
        self._io = self._hub.loop.io(fileno, 1)
        self._timers: dict[float, object] = {}

    def wait(self, timeout: float | None) -> bool:
        """Wait until the socket is readable (True) or `timeout` s passed (False)."""
        timer = None
        if timeout is not None:
            timer = self._timers.get(timeout)
            if timer is None:
                timer = self._timers[timeout] = self._hub.loop.timer(timeout, timeout)
        waiter = Waiter(self._hub)  # one per wait: a late callback of the other watcher finds no reader
        self._io.start(waiter.switch, True)
        if timer is not None:
            # again(), not start(): libev keeps what was left of a stopped timer and start() resumes
            # from there, so each wait would have had only the rest of the one before (a 10 s
            # timeout spent over many short waits fired at once); again() sets the whole `timeout`.
            timer.again(waiter.switch, False)
        try:
            return waiter.get()
        finally:
            self._io.stop()
            if timer is not None:
                timer.stop()

    def close(self) -> None:
        """Release the watchers (before the socket is closed: libev must not watch a closed descriptor)."""
        self._io.close()
        for timer in self._timers.values():
            timer.close()
        self._timers.clear()
