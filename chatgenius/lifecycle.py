"""What an app started, and the one way to stop it: `chatgenius.close(app)`.

create_app starts the bus reader, the hub's ticker and the background loops
(background.py) and registers how to stop each; close() stops them in reverse
order and releases the bus' connections, so a test (or an embedding app) can
create and close apps without leaving greenlets or Redis connections behind.
A gunicorn worker does not need it: its process ends (drain.py closes the bus).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from . import log


class Lifecycle:
    """Stops registered with `on_close`, run once, last registered first, by `close()`."""

    def __init__(self) -> None:
        self._stops: list[Callable[[], None]] = []
        self.closed = False

    def on_close(self, stop: Callable[[], None]) -> None:
        """Register a stop for close(); stops run last registered first, as in a stack of contexts."""
        self._stops.append(stop)

    def close(self) -> None:
        """Run every stop (idempotent); one failing does not keep the others from running."""
        if self.closed:
            return
        self.closed = True
        for stop in reversed(self._stops):
            try:
                stop()
            except Exception as exc:
                log.event("app.close_failed", logging.WARNING, step=getattr(stop, "__qualname__", repr(stop)), error=repr(exc))
