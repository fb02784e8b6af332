"""The event envelope, the type catalog and validation of what publishers send.

Validation happens before anything reaches the bus: a batch with one bad event
is refused whole, so a publisher never has to guess which half landed.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Sequence
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
# In the catalog, but the service's own: presence follows connections, so POST /events refuses it.
SERVICE_TYPES = frozenset({"user.presence"})
CATALOG = DURABLE_TYPES | EPHEMERAL_TYPES
MAX_BATCH = 100
MAX_DEPTH = 32
# An Idempotency-Key (the header, or an event's "idempotency_key"): printable ASCII, no spaces,
# so it can sit in a Redis key name and a log line as it is.
IDEMPOTENCY_KEY_RE = re.compile(r"[\x21-\x7e]{1,255}")


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
    body: str  # ',"type":...,"channel":...,"data":{...},"ts":...}' — see envelope_parts
    key: str | None = None  # the event's own idempotency key (see EventBus.publish_once)

    @property
    def durable(self) -> bool:
        """Durable events get a cursor and history; ephemeral ones (typing, presence) are live only."""
        return self.type in DURABLE_TYPES

    @property
    def content(self) -> str:
        """The body without its timestamp: what a repeat of the same event has in common with it."""
        return self.body[: self.body.rfind(',"ts":')]

    @property
    def fingerprint(self) -> str:
        """A short digest of channel, type and data; computed only for keyed events."""
        return digest([self])


def digest(drafts: Sequence[Draft]) -> str:
    """The fingerprint of what `drafts` publish (channel, type, data, in order; not the timestamps)."""
    return hashlib.blake2b("\n".join(d.content for d in drafts).encode(), digest_size=16).hexdigest()


def idempotency_key(raw: object, where: str = "Idempotency-Key") -> str:
    """`raw` if it is a valid idempotency key, else a 400 `bad_idempotency_key`."""
    if isinstance(raw, str) and IDEMPOTENCY_KEY_RE.fullmatch(raw):
        return raw
    raise EventError(f"{where} must be 1 to 255 printable ASCII characters without spaces", "bad_idempotency_key")


def valid_channel(name: object) -> bool:
    """True for a channel name the catalog accepts (`kind:id`, bounded length, safe characters)."""
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


_QUOTED_TYPES = {etype: dumps(etype) for etype in CATALOG}


def draft(raw: object, max_bytes: int, now: float | None = None) -> Draft:
    """Validate one `{"channel","type","data"}` object (and its optional "idempotency_key") into a Draft."""
    if not isinstance(raw, dict):
        raise EventError("each event must be a JSON object with channel, type and data")
    extra = set(raw) - {"channel", "type", "data", "idempotency_key"}
    if extra:
        raise EventError(f"unknown field: {sorted(extra)[0][:40]!r}")
    key = idempotency_key(raw["idempotency_key"], "idempotency_key") if "idempotency_key" in raw else None
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
    if type(channel) is not str:  # a str subclass (a str Enum) formats as it likes: keep its text only
        channel = str.__str__(channel)
    # Neither needs dumps(): a catalog type is quoted once, and a valid channel has no character JSON escapes.
    body = f',"type":{_QUOTED_TYPES[etype]},"channel":"{channel}","data":{data_json},"ts":{ts!r}}}'
    return Draft(channel=channel, type=etype, body=body, key=key)


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
            if isinstance(item, dict) and item.get("type") in SERVICE_TYPES:
                raise EventError(f"{item['type']} is sent by the service itself and cannot be published", "bad_type")
            out.append(draft(item, max_bytes, now))
        except EventError as exc:
            if len(items) > 1:
                raise EventError(f"events[{index}]: {exc}", exc.code, exc.status) from None
            raise
    keys = [d.key for d in out if d.key is not None]
    if len(keys) != len(set(keys)):
        raise EventError("two events of the batch have the same idempotency_key", "bad_idempotency_key")
    return out


ID_HEAD = '{"id":"'  # how a durable envelope starts, up to its cursor


def envelope_parts(durable: bool, body: str) -> tuple[str, str]:
    """The envelope around the cursor the bus assigns: `head + cursor + tail`.

    The one definition of the envelope's text: the memory bus joins it here
    (envelope_json), lua/publish.lua joins the same parts around the cursor it
    takes atomically. An ephemeral event has no id field (its cursor is "").
    """
    if durable:
        return ID_HEAD, '"' + body
    return "{", body[1:]


def envelope_json(cursor: str | None, body: str) -> str:
    """The envelope as sent on the wire; ephemeral events (cursor None) carry no id field."""
    head, tail = envelope_parts(cursor is not None, body)
    return head + (cursor or "") + tail
