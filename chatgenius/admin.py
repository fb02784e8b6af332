"""The operator's view: every stream on every worker and host, kicking one, runtime flags.

Permission `admin:sse` is checked by web/admin.py before any of this runs.
Listing and kicking go over the control plane (control/service.py): every process
answers for its own streams, so the view is live (events sent and queue depth
as of now), not a registry that lags by a refresh interval.
"""

from __future__ import annotations

import logging
from typing import Any

from . import log
from .control.service import ControlPlane
from .errors import ServiceError, bus_or_503
from .flags import NAMES, RuntimeFlags
from .service import Realtime
from .stream import StreamSession


def describe(session: StreamSession) -> dict[str, Any]:
    """One stream as GET /admin/connections lists it (worker and host are added per process)."""
    sub = session.sub
    return {
        "id": sub.id,
        "user_id": sub.user_id,
        "channels": sorted(sub.channels),
        "opened": round(sub.opened, 3),
        "resumed": sub.resumed,
        "events_sent": sub.sent,
        "queue_depth": sub.depth,
    }


class Admin:
    """Use cases of /admin/connections and /admin/flags; registers the control handlers they need."""

    def __init__(self, rt: Realtime, control: ControlPlane, flags: RuntimeFlags) -> None:
        self.rt = rt
        self.control = control
        self.flags = flags
        control.handle("connections", self._list)
        control.handle("kick", self._kick)
        control.handle("flags", self._flags_changed)

    def connections(self) -> dict[str, Any]:
        """Every open stream of the deployment, with the number of processes that answered."""
        with bus_or_503():
            answers = self.control.ask("connections", {})
        rows = []
        for answer in answers:
            where = {"worker": answer.get("worker"), "host": answer.get("host")}
            rows.extend({**row, **where} for row in answer.get("connections", []))
        rows.sort(key=lambda r: (r["opened"], r["id"]))
        return {"connections": rows, "processes": len(answers)}

    def kick(self, connection_id: str, admin: str) -> dict[str, Any]:
        """End one stream with system.reconnect wherever it is served; 404 if none answers."""
        with bus_or_503():
            answers = self.control.ask("kick", {"connection_id": connection_id}, first_found=True)
        found = next((a for a in answers if a.get("found")), None)
        if found is None:
            raise ServiceError(404, "no_connection", f"no live stream {connection_id[:64]!r}")
        log.event("admin.kick", connection_id=connection_id, user_id=admin, worker=found.get("worker"), host=found.get("host"))
        return {"id": connection_id, "worker": found.get("worker"), "host": found.get("host")}

    def current_flags(self) -> dict[str, bool]:
        """The runtime flags this process applies now (GET /admin/flags)."""
        return self.flags.current()

    def set_flags(self, payload: object, admin: str) -> dict[str, bool]:
        """Store the overrides, apply them here, tell every other process (each also re-reads every second)."""
        if not isinstance(payload, dict) or not payload:
            raise ServiceError(400, "bad_flags", 'send {"ENABLE_SSE": true|false|null, "ENABLE_COMPRESSION": ...}')
        unknown = sorted(set(payload) - set(NAMES))
        if unknown:
            raise ServiceError(400, "bad_flags", f"unknown flag {unknown[0][:40]!r}; flags are {', '.join(NAMES)}")
        if not all(v is None or isinstance(v, bool) for v in payload.values()):
            raise ServiceError(400, "bad_flags", "a flag is true, false, or null (back to the environment's default)")
        with bus_or_503():
            current = self.flags.update(payload)
            reached = self.control.broadcast("flags")
        log.event("admin.flags", logging.WARNING, user_id=admin, changes=payload, flags=current, processes=reached)
        return current

    # -- control handlers (in every process) -----------------------------------------------------
    def _list(self, message: dict[str, Any]) -> dict[str, Any]:
        return {"found": True, "connections": [describe(s) for s in self.rt.streams]}

    def _kick(self, message: dict[str, Any]) -> dict[str, Any] | None:
        session = self.rt.streams.get(message.get("connection_id", ""))
        if session is None or session.sub.end_reason is not None:
            return None
        session.sub.end("admin_kick", self.rt.reconnect_frame(session.sub))
        return {"found": True}

    def _flags_changed(self, message: dict[str, Any]) -> None:
        self.flags.refresh()
        return None
