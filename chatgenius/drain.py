"""Zero-loss drain: when gunicorn stops a worker, its streams are told to come back elsewhere.

gunicorn flips `worker.alive` on SIGTERM (shutdown; HUP, a reload, sends it to
each old worker) and on max-requests; we start at once on SIGTERM, within a
second otherwise (see `watch`), refuse new streams, and end each open stream with
`system.reconnect` at a jittered moment spread over `spread` seconds so the
crowd does not reconnect in one instant (Nchan #505). Clients resume with their
cursor, so nothing is lost and nothing repeats.
"""

from __future__ import annotations

import os
import random
import signal
import time

import gevent

from . import log
from .background import sleep_to_grid
from .service import Realtime
from .stream import control_frame, jittered


def drain(rt: Realtime, spread: float, cause: str = "stopped") -> int:
    """End every local stream over `spread` seconds; returns how many were told.

    The Hub's subscribers, not the stream registry (streams.py): a waiting long-poll
    is told too, and answers at once instead of at its timeout."""
    rt.draining = True
    subs = list(rt.bus.hub.subscribers.values())
    for sub in subs:
        frame = control_frame("system.reconnect", {"retry_ms": jittered(rt.settings.reconnect_retry_ms)})
        gevent.spawn_later(random.uniform(0, spread), sub.end, "drain", frame)
    log.event("worker.drain", streams=len(subs), spread=spread, cause=cause)
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
    """Called from gunicorn's post_worker_init: drain once the worker is told to stop.

    SIGTERM (shutdown, and each old worker of a reload) starts the drain at once,
    from the signal handler gunicorn installed, which runs first. A stop without
    a signal (max_requests, a lost master) flips `worker.alive` only: a check a
    second on the process's grid (background.py) catches those.
    """
    rt: Realtime = worker.wsgi.extensions["chatgenius"]
    rt.worker_id = worker.pid
    rt.capacity = worker.cfg.worker_connections
    spread = spread_for(worker.cfg.graceful_timeout)
    begun: list[str] = []

    def begin(cause: str) -> None:
        if not begun:
            begun.append(cause)
            gevent.spawn(run, cause)

    def run(cause: str) -> None:
        drain(rt, spread, cause)
        gevent.sleep(spread + 0.5)
        rt.bus.close()

    gunicorns = signal.getsignal(signal.SIGTERM)

    def on_term(sig, frame) -> None:
        if callable(gunicorns):
            gunicorns(sig, frame)  # worker.alive = False
        begin("SIGTERM")  # spawning from a signal handler, as gunicorn's gevent worker does for SIGQUIT

    signal.signal(signal.SIGTERM, on_term)
    signal.siginterrupt(signal.SIGTERM, False)  # as gunicorn set it: a stop must not interrupt a request's system calls

    def poll() -> None:
        while worker.alive:
            sleep_to_grid(1.0)
        begin("stopped")

    gevent.spawn(poll)
