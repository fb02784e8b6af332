"""Cursors: `<epoch>-<seq>`, one global sequence per deployment.

`seq` is a single counter for all channels, so one cursor resumes every channel
a connection holds (what lets native EventSource `Last-Event-ID` work on a
multi-channel stream). The epoch names the counter's lifetime: a Redis that lost
its data starts a new epoch, and a cursor from the old one is answered with
`system.reset` instead of being silently compared with numbers that restarted
(the idea of centrifuge's stream positions). Clients treat cursors as opaque.
"""

from __future__ import annotations

import re
import secrets
import string
from typing import NamedTuple

_CURSOR = re.compile(r"^([a-z0-9]{4,16})-(\d{1,18})$")
_ALPHABET = string.ascii_lowercase + string.digits


class CursorError(ValueError):
    """A cursor that is not of our form at all (a client bug): 400 bad_cursor."""


class Cursor(NamedTuple):
    epoch: str
    seq: int

    def __str__(self) -> str:
        return f"{self.epoch}-{self.seq}"


def parse(raw: str) -> Cursor:
    match = _CURSOR.fullmatch(raw)
    if match is None:
        raise CursorError("cursor is malformed; pass back an id the server gave you")
    return Cursor(match.group(1), int(match.group(2)))


def new_epoch() -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(10))
