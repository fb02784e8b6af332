"""The event envelope, the type catalog and validation of what publishers send.

Validation happens before anything reaches the bus: a batch with one bad event
is refused whole, so a publisher never has to guess which half landed.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from typing import Any

CHANNEL_RE = re.compile(r"^[a-z][a-z0-9_-]*:[A-Za-z0-9_.:|@-]{1,120}$")

DURABLE_TYPES = frozenset(
    {
        "message.created",
        "message.updated",
        "message.deleted",
        "reaction.added",
        "reaction.removed",
        "channel.updated",
        "user.presence",
        "system.health",
        "system.error",
    }
)
EPHEMERAL_TYPES = frozenset({"user.typing"})
CATALOG = DURABLE_TYPES | EPHEMERAL_TYPES
# Frames the server sends to one connection; a publisher may never forge them.
CONNECTION_FRAMES = frozenset(
    {"system.connected", "system.reset", "system.fallback", "system.reauth", "system.reconnect"}
)
# In the catalog, but the service's own: presence follows connections (presence.py), never a publisher.
SERVICE_TYPES = frozenset({"user.presence"})
MAX_BATCH = 100
MAX_DEPTH = 32


class EventError(ValueError):
    """Bad publisher input; `code` and `status` become the JSON error."""

    def __init__(self, message: str, code: str = "bad_request", status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


@dataclass(frozen=True, slots=True)
class Draft:
    """A validated event waiting for its cursor; `body` is the JSON after the id."""

    channel: str
    type: str
    body: str  # ',"type":...,"channel":...,"data":{...},"ts":...}' — see envelope_json

    @property
    def durable(self) -> bool:
        return self.type in DURABLE_TYPES


def valid_channel(name: object) -> bool:
    # fullmatch: `$` alone also matches before a trailing newline ("channel:a\n").
    return isinstance(name, str) and CHANNEL_RE.fullmatch(name) is not None


def parse_channels(raw: str | None, limit: int) -> list[str]:
    """Split a `channels=a,b` query value, keep order, drop duplicates."""
    if not raw:
        raise EventError("channels is required: ?channels=channel:general,dm:1-2", "bad_channels")
    names = list(dict.fromkeys(c.strip() for c in raw.split(",") if c.strip()))
    bad = [c for c in names if not valid_channel(c)]
    if bad:
        raise EventError(f"invalid channel name: {bad[0][:140]!r}", "bad_channels")
    if not names:
        raise EventError("channels is required", "bad_channels")
    if len(names) > limit:
        raise EventError(f"at most {limit} channels per request", "too_many_channels")
    return names


def _depth(value: Any, level: int = 0) -> int:
    if level > MAX_DEPTH:
        return level
    if isinstance(value, dict):
        return max((_depth(v, level + 1) for v in value.values()), default=level + 1)
    if isinstance(value, list):
        return max((_depth(v, level + 1) for v in value), default=level + 1)
    return level


def dumps(value: Any) -> str:
    """Compact JSON with every non-ASCII char escaped: frames stay one line."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def draft(raw: object, max_bytes: int, now: float | None = None) -> Draft:
    """Validate one `{"channel","type","data"}` object into a Draft."""
    if not isinstance(raw, dict):
        raise EventError("each event must be a JSON object with channel, type and data")
    extra = set(raw) - {"channel", "type", "data"}
    if extra:
        raise EventError(f"unknown field: {sorted(extra)[0][:40]!r}")
    channel, etype, data = raw.get("channel"), raw.get("type"), raw.get("data", {})
    if not valid_channel(channel):
        raise EventError(f"invalid channel: {str(channel)[:140]!r}", "bad_channel")
    if not isinstance(etype, str) or etype not in CATALOG:
        raise EventError(f"unknown event type: {str(etype)[:60]!r}; see the catalog in docs/API.md", "bad_type")
    if not isinstance(data, dict):
        raise EventError("data must be a JSON object", "bad_data")
    if _depth(data) > MAX_DEPTH:
        raise EventError(f"data is nested deeper than {MAX_DEPTH} levels", "bad_data")
    try:
        data_json = dumps(data)
    except (TypeError, ValueError) as exc:
        raise EventError(f"data is not serializable JSON: {exc}", "bad_data") from None
    if len(data_json) > max_bytes:
        raise EventError(f"data is {len(data_json)} bytes, more than MAX_EVENT_BYTES={max_bytes}", "too_large", 413)
    ts = round(time.time() if now is None else now, 6)
    assert isinstance(channel, str)
    body = f',"type":{dumps(etype)},"channel":{dumps(channel)},"data":{data_json},"ts":{ts!r}}}'
    return Draft(channel=channel, type=etype, body=body)


def drafts_from_request(payload: object, max_bytes: int) -> list[Draft]:
    """Accept a single event or `{"events": [...]}` (at most MAX_BATCH), all or nothing."""
    if isinstance(payload, dict) and "events" in payload:
        if set(payload) != {"events"}:
            raise EventError("a batch is {\"events\": [...]} with nothing beside it")
        items = payload["events"]
        if not isinstance(items, list) or not items:
            raise EventError("events must be a non-empty list")
        if len(items) > MAX_BATCH:
            raise EventError(f"at most {MAX_BATCH} events per batch", "too_many_events", 413)
    else:
        items = [payload]
    now = time.time()
    out = []
    for index, item in enumerate(items):
        try:
            made = draft(item, max_bytes, now)
            if made.type in SERVICE_TYPES:
                raise EventError(f"{made.type} is sent by the service itself and cannot be published", "bad_type")
            out.append(made)
        except EventError as exc:
            if len(items) > 1:
                raise EventError(f"events[{index}]: {exc}", exc.code, exc.status) from None
            raise
    return out


def envelope_json(cursor: str | None, body: str) -> str:
    """The envelope as sent on the wire; ephemeral events carry no id field."""
    if cursor is None:
        return "{" + body[1:]
    return '{"id":' + dumps(cursor) + body
