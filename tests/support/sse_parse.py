"""Incremental, spec-exact decoding of an SSE response body: chunked -> gzip -> events.

Each stage is a pure object fed arbitrary byte splits, so tests can prove the
server's bytes parse identically however the network cuts them. Parsing
follows WHATWG HTML "Server-sent events", 9.2.6 "Interpreting an event stream".

Deliberate divergence: `Frame.id` is the `id` field carried by *that* block
(None if it had none), not the spec's sticky lastEventId, because tests assert
what the server put on each event. The sticky value is `EventParser.last_event_id`.
Likewise `Frame.retry` is a `retry` field in that block; `EventParser.retry`
keeps the last one seen even from blocks that dispatched nothing.
"""

from __future__ import annotations

import codecs
import json
import re
import zlib
from dataclasses import dataclass
from typing import Any

_EOL = re.compile(r"\r\n|\r|\n")


@dataclass(frozen=True)
class Frame:
    """One dispatched event."""

    data: str
    event: str = "message"
    id: str | None = None
    retry: int | None = None

    def json(self) -> Any:
        return json.loads(self.data)


@dataclass(frozen=True)
class Comment:
    """A line starting with ':' (servers use them as heartbeats); `text` excludes the colon."""

    text: str


class EventParser:
    """bytes -> lines -> events, keeping state across feeds (a CR may end one feed, its LF start the next)."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._line = ""
        self._after_cr = False
        self._first = True
        self._data: list[str] = []
        self._event = ""
        self._id: str | None = None
        self._retry: int | None = None
        self.last_event_id = ""
        self.retry: int | None = None

    def feed(self, data: bytes) -> list[Frame | Comment]:
        """Consume bytes; return the events and comments completed by them, in order."""
        text = self._decoder.decode(data)
        if self._first and text:
            self._first = False
            text = text.removeprefix("\ufeff")
        if not text:
            return []
        if self._after_cr and text.startswith("\n"):
            text = text[1:]  # the LF of a CRLF split across feeds; its line already ended
        self._after_cr = text.endswith("\r")
        *lines, rest = _EOL.split(text)
        out: list[Frame | Comment] = []
        for n, line in enumerate(lines):
            item = self._process_line(self._line + line if n == 0 else line)
            if item is not None:
                out.append(item)
        self._line = rest if lines else self._line + rest
        return out

    def _process_line(self, line: str) -> Frame | Comment | None:
        if line == "":
            return self._dispatch()
        if line.startswith(":"):
            return Comment(line[1:])
        field, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if field == "data":
            self._data.append(value)
        elif field == "event":
            self._event = value
        elif field == "id":
            if "\0" not in value:
                self._id = value
                self.last_event_id = value
        elif field == "retry" and value and all("0" <= c <= "9" for c in value):
            self._retry = self.retry = int(value)
        return None

    def _dispatch(self) -> Frame | None:
        data, event, id_, retry = self._data, self._event, self._id, self._retry
        self._data, self._event, self._id, self._retry = [], "", None, None
        if not data:
            return None
        return Frame(data="\n".join(data), event=event or "message", id=id_, retry=retry)


class ChunkedDecoder:
    """Incremental HTTP/1.1 chunked transfer-coding decoder (RFC 9112, 7.1)."""

    def __init__(self) -> None:
        self._buf = b""
        self._remaining = 0  # bytes left in the current chunk's data
        self._state = "size"  # size | data | data_crlf | trailer | done

    @property
    def done(self) -> bool:
        """True once the terminating zero-size chunk and trailers have been read."""
        return self._state == "done"

    def feed(self, data: bytes) -> bytes:
        """Consume raw body bytes; return the payload bytes they complete."""
        self._buf += data
        out = bytearray()
        while True:
            if self._state == "data":
                take = self._buf[: self._remaining]
                out += take
                self._buf = self._buf[len(take) :]
                self._remaining -= len(take)
                if self._remaining:
                    break
                self._state = "data_crlf"
            elif self._state == "data_crlf":
                if len(self._buf) < 2:
                    break
                if self._buf[:2] != b"\r\n":
                    raise ValueError(f"chunk not followed by CRLF: {self._buf[:2]!r}")
                self._buf = self._buf[2:]
                self._state = "size"
            elif self._state in ("size", "trailer"):
                line, sep, rest = self._buf.partition(b"\r\n")
                if not sep:
                    break
                self._buf = rest
                if self._state == "trailer":
                    if line == b"":
                        self._state = "done"
                    continue
                size = int(line.split(b";", 1)[0].strip(), 16)
                self._remaining = size
                self._state = "data" if size else "trailer"
            else:  # done: bytes after the stream belong to the next response
                break
        return bytes(out)


class GzipDecoder:
    """Incremental gzip decoding; with a server's Z_SYNC_FLUSH each event decodes on arrival."""

    def __init__(self) -> None:
        self._z = zlib.decompressobj(16 + zlib.MAX_WBITS)

    def feed(self, data: bytes) -> bytes:
        return self._z.decompress(data)

    @property
    def done(self) -> bool:
        """True once the gzip trailer (CRC, size) has been read and checked."""
        return self._z.eof
