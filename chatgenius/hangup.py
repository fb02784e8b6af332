"""Notice at once that a stream's client hung up, instead of at the next heartbeat write.

An idle stream writes only every HEARTBEAT_INTERVAL, and a closed socket is
found by the write that fails: up to two heartbeats later (~30 s), all the
while holding the user's connection lease and their presence. After its
request a stream's client sends nothing, so the socket turning readable means
it closed (EOF) or reset. One libev read watcher per stream socket notices
that (no greenlet, ~200 bytes with its arguments); its callback runs in the
hub, peeks one byte without blocking, and on EOF ends the stream as a failed
write would. Stray bytes (a pipelined request) stop the watcher: the heartbeat
still finds a dead peer. A client that only half-closes (FIN, still reading)
is treated as gone.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable
from typing import Any

from gevent.hub import get_hub

from .wire import client_socket

__all__ = ["client_socket", "unwatch", "watch"]

_READ = 1  # libev EV_READ
_PEEK = socket.MSG_PEEK | socket.MSG_DONTWAIT


def watch(sock: Any, on_hangup: Callable[[str], None]) -> Any | None:
    """Call `on_hangup("client_closed")` from the hub when the peer closes `sock`; returns the watcher
    (stop it with `unwatch` before the socket is closed or reused), or None when it cannot watch."""
    raw = getattr(sock, "_sock", sock)  # gevent keeps the OS socket, non-blocking, here
    try:
        fd = raw.fileno()
    except (OSError, AttributeError):
        return None
    if fd < 0:
        return None
    watcher = get_hub().loop.io(fd, _READ)
    watcher.start(_readable, watcher, raw, on_hangup)
    return watcher


def unwatch(watcher: Any | None) -> None:
    """Stop and close a stream's hang-up watcher (None: nothing was watched); never raises."""
    if watcher is not None:
        watcher.stop()
        with contextlib.suppress(Exception):
            watcher.close()


def _readable(watcher: Any, raw: socket.socket, on_hangup: Callable[[str], None]) -> None:
    try:
        data = raw.recv(1, _PEEK)
    except (BlockingIOError, InterruptedError):
        return  # spurious wake-up: nothing to read after all
    except OSError:
        data = b""  # reset by the peer: gone as well
    watcher.stop()
    if not data:
        on_hangup("client_closed")
