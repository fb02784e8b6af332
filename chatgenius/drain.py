"""Zero-loss drain: when gunicorn stops a worker, its streams are told to come back elsewhere.

gunicorn flips `worker.alive` on SIGTERM, HUP (reload) and max-requests; we
notice within a second (as gunicorn's own loop does, on the process's shared
clock: background.py), refuse new streams, and end each open stream with
`system.reconnect` at a jittered moment spread over `spread` seconds so the
crowd does not reconnect in one instant (Nchan #505). Clients resume with their
cursor, so nothing is lost and nothing repeats.
"""

from __future__ import annotations

import os
import random
import time

import gevent

from . import log
from .background import sleep_to_grid
from .service import Realtime
from .stream import control_frame, jittered


def drain(rt: Realtime, spread: float) -> int:
    """End every local stream over `spread` seconds; returns how many were told.

    The Hub's subscribers, not the stream registry (streams.py): a waiting long-poll
    is told too, and answers at once instead of at its timeout."""
    rt.draining = True
    subs = list(rt.bus.hub.subscribers.values())
    for sub in subs:
        frame = control_frame("system.reconnect", {"retry_ms": jittered(rt.settings.reconnect_retry_ms)})
        gevent.spawn_later(random.uniform(0, spread), sub.end, "drain", frame)
    log.event("worker.drain", streams=len(subs), spread=spread)
    return len(subs)


def spread_for(graceful_timeout: float) -> float:
    """Seconds to spread the reconnects over: a third of gunicorn's graceful_timeout, 0.5 to 5 s,
    so every stream is told (and the bus closed, 0.5 s later) well before the master's SIGKILL."""
    return max(0.5, min(5.0, graceful_timeout / 3))


def finish(worker) -> None:
    """gunicorn's worker_exit hook, run in the worker once its pool is empty: streams detached from
    the pool (stream.py) do not keep gunicorn waiting, so wait here, a little past the drain's
    spread, until each was told to reconnect and is gone. A no-op in the master."""
    rt: Realtime | None = getattr(getattr(worker, "wsgi", None), "extensions", {}).get("chatgenius")
    if rt is None or worker.pid != os.getpid():
        return
    deadline = time.monotonic() + spread_for(worker.cfg.graceful_timeout) + 2
    while rt.bus.hub.subscribers and time.monotonic() < deadline:
        gevent.sleep(0.1)


def watch(worker) -> None:
    """Called from gunicorn's post_worker_init: wait for shutdown, then drain."""
    rt: Realtime = worker.wsgi.extensions["chatgenius"]
    rt.worker_id = worker.pid
    rt.capacity = worker.cfg.worker_connections
    spread = spread_for(worker.cfg.graceful_timeout)

    def loop() -> None:
        while worker.alive:
            sleep_to_grid(1.0)
        drain(rt, spread)
        gevent.sleep(spread + 0.5)
        rt.bus.close()

    gevent.spawn(loop)
