"""ChatGenius realtime: SSE streams over an event bus (see docs/ARCHITECTURE.md).

`realtime(app)` is the app's own publishing API (docs/API.md, Publishing from Python);
`close(app)` stops what the app started (chatgenius/lifecycle.py).
This module imports nothing: a worker process imports chatgenius.publisher without Flask.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .publishing import Publisher


def realtime(app: Any) -> Publisher:
    """The publisher of an app made by chatgenius.factory.create_app: publish from its own code,
    in a request or outside one, with POST /events' validation, ids and bus but no HTTP."""
    return app.extensions["chatgenius"].publisher


def close(app: Any) -> None:
    """Stop an app made by create_app: its background greenlets and bus reader, its Redis connections.

    Idempotent; the app serves no stream afterwards."""
    app.extensions["chatgenius.lifecycle"].close()
