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

from .unique import UniqueNames

_CURSOR = re.compile(r"^([a-z0-9]{4,16})-(\d{1,18})$")
_ALPHABET = string.ascii_lowercase + string.digits


class CursorError(ValueError):
    """A cursor that is not of our form at all (a client bug): 400 bad_cursor."""


class Cursor(NamedTuple):
    """A position in the deployment's sequence; `str()` is the `<epoch>-<seq>` clients see as event ids."""

    epoch: str
    seq: int

    def __str__(self) -> str:
        return f"{self.epoch}-{self.seq}"


def parse(raw: str) -> Cursor:
    """The Cursor of an id the server gave out, or CursorError (a 400) for anything else."""
    match = _CURSOR.fullmatch(raw)
    if match is None:
        raise CursorError("cursor is malformed; pass back an id the server gave you")
    return Cursor(match.group(1), int(match.group(2)))


def base36(n: int, digits: str) -> str:
    """`n` in base 36 with `digits` as its 36 digits, most significant first (shard_cursor.py uses
    0-9a-z, which int(text, 36) reads back; an epoch's counter here only needs to be unique)."""
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = digits[r] + out
        if not n:
            return out


# Epoch names: a random prefix of 9 characters per process and a counter, 10 to 16 characters in all (the
# cursor's form allows 4 to 16). Why not fresh randomness per call (unique.py): the Redis bus proposes a
# candidate epoch with every publish (used when none is stored, and at a writer fence), and drawing ten characters from the
# OS took ten getrandom(2) calls, the largest syscall cost of a publish. An epoch must never name two
# lifetimes of a sequence: a counter within a random prefix never repeats.
new_epoch = UniqueNames(
    lambda: "".join(secrets.choice(_ALPHABET) for _ in range(9)), 36**4, lambda prefix, n: prefix + base36(n, _ALPHABET)
)
