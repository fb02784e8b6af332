"""Server-Sent Events wire encoding: pure functions, no I/O.

The one rule that keeps the framing safe: a field value may never hold CR or LF
(WHATWG HTML, "Parsing an event stream": CR, LF and CRLF all end a line). Data is
split into several `data:` lines, which the client joins back with LF; `id` and
`event` values with a line break or NUL are refused, since no honest caller
makes them. Event payloads are JSON with every non-ASCII character escaped, so
in practice they are always one line and U+2028/U+2029 never reach the wire raw.

This module is the only place event parts become SSE bytes: the memory bus and
history replay call `durable_frame`/`ephemeral_frame`, the Redis reader calls
`frame_from_live` (the cluster's `body_from_live`) on what lua/publish.lua published.
"""

from __future__ import annotations

import re

_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_FORBIDDEN = re.compile(r"[\r\n\x00]")


class FramingError(ValueError):
    """A field value that could add a line or a field to the stream."""


def _field(name: str, value: str) -> str:
    if _FORBIDDEN.search(value):
        raise FramingError(f"{name} may not contain CR, LF or NUL")
    return f"{name}: {value}\n"


def encode(data: str, event: str | None = None, id: str | None = None) -> bytes:
    """One complete event: optional `id`, optional `event`, data lines, blank line."""
    parts = []
    if id is not None:
        parts.append(_field("id", id))
    if event is not None:
        parts.append(_field("event", event))
    for line in _LINE_BREAK.split(data):
        parts.append(f"data: {line}\n")
    parts.append("\n")
    return "".join(parts).encode("utf-8")


def retry(ms: int) -> bytes:
    """The reconnection delay the browser should use."""
    return f"retry: {int(ms)}\n\n".encode("ascii")


def comment(text: str = "") -> bytes:
    """A comment line (heartbeat); line breaks are folded to spaces."""
    return (": " + _LINE_BREAK.sub(" ", text) + "\n\n").encode("utf-8")


def durable_frame(cursor: str, etype: str, envelope: str) -> bytes:
    """The hot-path encoder for bus events: built once per event, shared by every stream.

    `cursor` and `etype` come from the bus (validated at publish), `envelope`
    is JSON made by events.dumps, so it is ASCII on one line; the general
    `encode` still guards against anything else.
    """
    if "\n" in envelope or "\r" in envelope:
        return encode(envelope, etype, cursor)
    return b"".join(
        (b"id: ", cursor.encode(), b"\nevent: ", etype.encode(), b"\ndata: ", envelope.encode(), b"\n\n")
    )


def frame_from_live(payload: bytes) -> tuple[bytes, int, bytes]:
    """(epoch, seq, frame) of a Redis live payload, without parsing its JSON.

    The payload is `<cursor>\n<type>\n<envelope>` as lua/publish.lua publishes it,
    the cursor empty for an ephemeral event (epoch b"", seq 0). The frame is
    byte for byte what `durable_frame` / `ephemeral_frame` make of the same parts;
    the reader builds it once per event, for every local stream.
    """
    cursor, etype, envelope = payload.split(b"\n", 2)
    if not cursor:
        return b"", 0, b"event: " + etype + b"\ndata: " + envelope + b"\n\n"
    epoch, _, seq = cursor.rpartition(b"-")
    return epoch, int(seq), b"id: " + cursor + b"\nevent: " + etype + b"\ndata: " + envelope + b"\n\n"


def body_from_live(payload: bytes) -> tuple[bytes, int, bytes]:
    """`frame_from_live` without the `id:` line: on Redis Cluster each stream writes its own id
    (its vector of shard positions, shard_cursor.stamp) before the shared body."""
    cursor, etype, envelope = payload.split(b"\n", 2)
    epoch, _, seq = cursor.rpartition(b"-")
    return epoch, int(seq or 0), b"event: " + etype + b"\ndata: " + envelope + b"\n\n"


def ephemeral_frame(etype: str, envelope: str) -> bytes:
    """A bus event that carries no id (it is never replayed)."""
    return encode(envelope, etype)
