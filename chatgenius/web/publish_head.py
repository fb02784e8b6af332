"""The head of the usual POST /events, read straight off the bytes a publisher sent.

Why: under gunicorn, parsing a request and building its WSGI environ cost more
than validating and storing the event (docs/PERFORMANCE.md). A publisher's
request is always the same small shape, so gunicorn_worker.PublishWorker reads
that shape itself and leaves every other request to gunicorn.

Strict on purpose: `parse` accepts only a head it can read without doubt and
says None to anything else (another method or path, a query string, HTTP/1.0,
bare line feeds, folded or duplicated headers, names with underscores,
Transfer-Encoding, Expect, Upgrade, Origin, a Content-Length that is not plain
digits or has more than 18, too many or too long lines, by gunicorn's own limits). None is never a refusal: the request goes
to gunicorn and Flask, which answer it, errors included, as they always have.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

REQUEST_LINE = b"POST /events HTTP/1.1\r\n"
# Header lines, each `name:value` and CRLF: the name a token without "_" (gunicorn drops those), the
# value without control characters but tab. One match checks the whole block (a regex per line
# cost more than the rest of the parse).
_LINES = re.compile(rb"(?:[!#$%&'*+\-.^`|~0-9A-Za-z]+:[\t\x20-\x7e\x80-\xff]*\r\n)*")
# More digits than any body could have (and past 4,300 int() refuses them): gunicorn answers that one.
MAX_LENGTH_DIGITS = 18
# Headers that change how the body is framed or who answers: gunicorn and Flask handle these.
_NOT_OURS = frozenset({"transfer-encoding", "expect", "upgrade", "origin", "content-encoding", "http2-settings", "te"})


@dataclass(frozen=True, slots=True)
class Head:
    """A publish request's head: its size in bytes, headers (lower-case names) and framing."""

    size: int
    headers: dict[str, str]
    length: int
    close: bool


def parse(data: bytes, max_fields: int = 100, max_line: int = 8190) -> Head | None:
    """The head at the start of `data` if it is the usual publish's, else None.

    `data` may hold more than the head (the body, a pipelined request); a head
    not complete within its bytes is None too (gunicorn waits for the rest).
    """
    if not data.startswith(REQUEST_LINE):
        return None
    end = data.find(b"\r\n\r\n", len(REQUEST_LINE) - 2, len(REQUEST_LINE) + (max_fields + 1) * (max_line + 2))
    if end < 0:
        return None
    headers: dict[str, str] = {}
    block = data[len(REQUEST_LINE) : end + 2] if end >= len(REQUEST_LINE) else b""
    if block.count(b"\r\n") > max_fields:
        return None  # before the regex: many short lines are cheap to count, dearer to match
    if not _LINES.fullmatch(block):
        return None  # bare CR or LF, NUL, obs-fold (a name starting with a space), no colon, a bad name
    lines = block.split(b"\r\n")
    lines.pop()  # the empty one after the last CRLF
    for line in lines:
        if len(line) + 2 > max_line:
            return None
        raw_name, _, raw_value = line.partition(b":")
        name = raw_name.decode("ascii").lower()
        if name in headers or name in _NOT_OURS:
            return None
        headers[name] = raw_value.strip(b" \t").decode("latin-1")
    length = headers.get("content-length", "")
    if not (length.isascii() and length.isdigit()) or len(length) > MAX_LENGTH_DIGITS:
        return None
    connection = headers.get("connection", "keep-alive").lower()
    if connection not in ("keep-alive", "close"):
        return None
    return Head(end + 4, headers, int(length), connection == "close")
