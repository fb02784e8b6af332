"""Waiting for one socket's bytes on gevent's loop, without gevent's per-wait objects.

Why: a gevent socket's `recv` first tries the system call (which fails with
EAGAIN when nothing has come yet: the usual case for a reply or a next request
just asked for), then makes a timeout object for the wait. On a path taken once
per event (a Redis reply, a publisher's next request) that was measurable
(docs/PERFORMANCE.md). Here one I/O watcher lives as long as the socket and
one repeating timer per timeout value is reused; the caller reads the socket
itself once it is readable.

The I/O watcher stays started between waits: libev hands a watcher started
again on the same descriptor to the kernel again (an `epoll_ctl` per wait,
refused with EEXIST, seen with strace once per publish and per feed message).
It is stopped only when it fires with nobody waiting (epoll reports a readable
socket again on every turn until it is read); the next wait then returns at
once, and a caller whose read finds nothing (another reader took the bytes)
waits again.
"""

from __future__ import annotations

from typing import Any

from gevent.hub import Waiter, get_hub


class Readable:
    """`wait(timeout)`: True once the socket `fileno` is readable (or may be: see the module doc),
    False after `timeout` s (None: no limit)."""

    __slots__ = ("_hub", "_io", "_timers", "_waiter", "_ready")

    def __init__(self, fileno: int) -> None:
        self._hub = get_hub()
        self._io = self._hub.loop.io(fileno, 1)
        self._io.ref = False  # a started watcher nobody waits on must not keep the loop running
        self._timers: dict[float, Any] = {}  # libev timers (gevent.libev.corecext.timer)
        self._waiter: Waiter | None = None
        self._ready = False  # the watcher fired with nobody waiting, and was stopped

    def wait(self, timeout: float | None) -> bool:
        """Wait until the socket is readable (True) or `timeout` s passed (False)."""
        if self._ready:
            self._ready = False
            return True
        timer = None
        if timeout is not None:
            timer = self._timers.get(timeout)
            if timer is None:
                timer = self._timers[timeout] = self._hub.loop.timer(timeout, timeout)
        # One waiter per wait: the timer's late callback (both fired in one turn) finds no reader.
        waiter = self._waiter = Waiter(self._hub)
        io = self._io
        if not io.active:
            io.start(self._fired)
        io.ref = True
        if timer is not None:
            # again(), not start(): libev keeps what was left of a stopped timer and start() resumes
            # from there, so each wait would have had only the rest of the one before (a 10 s
            # timeout spent over many short waits fired at once); again() sets the whole `timeout`.
            timer.again(waiter.switch, False)
        try:
            return waiter.get()
        finally:
            self._waiter = None
            io.ref = False
            if timer is not None:
                timer.stop()

    def _fired(self) -> None:
        waiter = self._waiter
        if waiter is None:
            self._io.stop()  # nobody reads now: level-triggered, it would fire every turn until read
            self._ready = True
            return
        self._waiter = None
        waiter.switch(True)

    def close(self) -> None:
        """Release the watchers (before the socket is closed: libev must not watch a closed descriptor)."""
        self._io.close()
        for timer in self._timers.values():
            timer.close()
        self._timers.clear()
