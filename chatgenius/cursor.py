"""Cursors: `<epoch>-<seq>`, one global sequence per deployment.

`seq` is a single counter for all channels, so one cursor resumes every channel
a connection holds (what lets native EventSource `Last-Event-ID` work on a
multi-channel stream). The epoch names the counter's lifetime: a Redis that lost
its data starts a new epoch, and a cursor from the old one is answered with
`system.reset` instead of being silently compared with numbers that restarted
(the idea of centrifuge's stream positions). Clients treat cursors as opaque.
"""

from __future__ import annotations

import itertools
import os
import re
import secrets
import string
from typing import NamedTuple

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


class _Epochs:
    """Epoch names unique per call: a random prefix per process (new after a fork) and a counter.

    Why not fresh randomness per call: the Redis bus proposes a candidate epoch
    with every publish (used only when none is stored), and drawing ten
    characters from the OS took ten getrandom(2) calls, the largest syscall
    cost of a publish. Uniqueness is what matters: an epoch must never name two
    lifetimes of a sequence, and a counter within a random prefix never repeats.
    """

    def __init__(self) -> None:
        self.reseed()
        os.register_at_fork(after_in_child=self.reseed)

    def reseed(self) -> None:
        self.prefix = "".join(secrets.choice(_ALPHABET) for _ in range(9))
        self.counter = itertools.count(secrets.randbelow(36**4))

    def __call__(self) -> str:
        return self.prefix + base36(next(self.counter), _ALPHABET)  # 10 to 16 characters (the cursor's form allows 4 to 16)


new_epoch = _Epochs()
