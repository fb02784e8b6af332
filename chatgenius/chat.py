"""Chat semantics over the pipe: typing, presence, and changing a live stream's channels.

Plain Python like service.py (which it builds on); web/chat.py only turns
requests into these calls. docs/API.md: POST /typing, POST /subscriptions and
GET /presence/<channel>.
"""

from __future__ import annotations

import logging
from typing import Any

from . import log
from .auth import Identity
from .bus.base import BusUnavailable
from .control.service import ControlPlane
from .errors import ServiceError, bus_or_503, bus_unavailable
from .events import draft, valid_channel
from .presence.service import Presence
from .service import Realtime

TYPING_WINDOW = 2.0  # contract: at most one user.typing per 2 s per user and channel


class Chat:
    """Typing, presence and live subscriptions; registers its control handler (presence observes streams itself)."""

    def __init__(self, rt: Realtime, presence: Presence, control: ControlPlane) -> None:
        self.rt = rt
        self.presence = presence
        self.control = control
        control.handle("subscriptions", self._change)

    # -- typing ----------------------------------------------------------------------------
    def typing(self, identity: Identity, payload: object) -> bool:
        """Publish the caller's ephemeral user.typing; False when dropped by the 2 s throttle."""
        if not isinstance(payload, dict) or set(payload) != {"channel"}:
            raise ServiceError(400, "bad_request", 'send {"channel": "<name>"}')
        channel = payload["channel"]
        if not valid_channel(channel):
            raise ServiceError(400, "bad_channel", f"invalid channel: {str(channel)[:140]!r}")
        if not identity.may_read(channel):
            raise ServiceError(403, "forbidden", f"not allowed to read {channel!r}", extra={"channels": [channel]})
        event = draft({"channel": channel, "type": "user.typing", "data": {"user_id": identity.sub}}, self.rt.settings.max_event_bytes)
        with bus_or_503():
            if not self.control.store.first_within(f"{identity.sub}\0{channel}", TYPING_WINDOW):
                return False
            self.rt.bus.publish([event])
        self.rt.announce_published([event])
        return True

    # -- presence --------------------------------------------------------------------------
    def online(self, identity: Identity, channel: str) -> list[str]:
        """Users online on `channel` (those announced online and not yet offline)."""
        if not valid_channel(channel):
            raise ServiceError(400, "bad_channel", f"invalid channel: {channel[:140]!r}")
        if not identity.may_read(channel):
            raise ServiceError(403, "forbidden", f"not allowed to read {channel!r}", extra={"channels": [channel]})
        with bus_or_503():
            return self.presence.online(channel)

    # -- live subscriptions -------------------------------------------------------------------
    def change_subscriptions(self, identity: Identity, payload: object) -> dict[str, Any]:
        """Authorize here, then have the process serving the stream apply the change."""
        conn, subscribe, unsubscribe = self._parse(payload)
        denied = identity.forbidden(subscribe)
        if denied:
            raise ServiceError(403, "forbidden", f"not allowed to read {denied[0]!r}", extra={"channels": denied})
        fields = {"connection_id": conn, "user_id": identity.sub, "subscribe": subscribe, "unsubscribe": unsubscribe}
        with bus_or_503():
            answers = self.control.ask("subscriptions", fields, first_found=True)
        found = next((a for a in answers if a.get("found")), None)
        if found is None:
            raise ServiceError(404, "no_connection", f"no live stream {conn!r} of yours answered")
        error = found.get("error")
        if error == "bus_unavailable":
            raise bus_unavailable("the live feed did not confirm the subscription")
        if error == "no_channels":
            raise ServiceError(400, "no_channels", "a stream keeps at least one channel; close it instead")
        if error == "too_many_channels":
            raise ServiceError(400, "too_many_channels", f"at most {self.rt.settings.max_channels_per_stream} channels per stream")
        if error is not None:
            raise ServiceError(500, "internal", "the change failed; it has been logged")
        return {"connection_id": conn, "channels": found["channels"]}

    def _parse(self, payload: object) -> tuple[str, list[str], list[str]]:
        if not isinstance(payload, dict) or "connection_id" not in payload or set(payload) - {"connection_id", "subscribe", "unsubscribe"}:
            raise ServiceError(400, "bad_request", 'send {"connection_id", "subscribe": [...], "unsubscribe": [...]}')
        conn = payload["connection_id"]
        if not isinstance(conn, str) or not 0 < len(conn) <= 64 or not conn.isalnum():
            raise ServiceError(400, "bad_request", "connection_id is the id from system.connected")
        lists = []
        for name in ("subscribe", "unsubscribe"):
            value = payload.get(name, [])
            limit = self.rt.settings.max_channels_per_stream
            if not isinstance(value, list) or len(value) > limit:
                raise ServiceError(400, "bad_channels", f"{name} must be a list of at most {limit} channel names")
            bad = [c for c in value if not valid_channel(c)]
            if bad:
                raise ServiceError(400, "bad_channels", f"invalid channel name: {str(bad[0])[:140]!r}")
            lists.append(list(dict.fromkeys(value)))
        if not lists[0] and not lists[1]:
            raise ServiceError(400, "bad_request", "nothing to change: subscribe and unsubscribe are empty")
        return conn, lists[0], lists[1]

    def _change(self, message: dict[str, Any]) -> dict[str, Any] | None:
        """In the process that serves the stream (control op "subscriptions"); None: not ours."""
        conn = message.get("connection_id")
        session = self.rt.streams.get(conn) if isinstance(conn, str) else None
        if session is None or session.sub.user_id != message.get("user_id") or session.sub.end_reason is not None:
            return None  # another user's stream is "not found" too: ids reveal nothing
        sub = session.sub
        add = [c for c in message.get("subscribe", []) if c not in sub.channels]
        drop = [c for c in message.get("unsubscribe", []) if c in sub.channels and c not in add]
        after = (sub.channels | set(add)) - set(drop)
        if not after:
            return {"found": True, "error": "no_channels"}
        if len(after) > self.rt.settings.max_channels_per_stream:
            return {"found": True, "error": "too_many_channels"}
        if add:
            try:
                self.rt.bus.attach(sub, add)  # returns once the live feed covers them
            except BusUnavailable:
                return {"found": True, "error": "bus_unavailable"}
            if conn not in self.rt.streams:  # the stream ended while we waited: undo
                self.rt.bus.detach(sub)
                return None
            self.presence.joined(sub.id, sub.user_id, add)
        if drop:
            self.rt.bus.detach(sub, drop)
            self.presence.left(sub.id, drop)
        log.event(
            "connection.subscriptions", logging.INFO, connection_id=sub.id, user_id=sub.user_id,
            subscribed=add, unsubscribed=drop, channels=sorted(sub.channels),
        )
        return {"found": True, "channels": sorted(sub.channels)}
