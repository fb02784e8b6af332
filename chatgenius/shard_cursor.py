"""Cursors on Redis Cluster: one position per shard, still one opaque string for the client.

A cluster has no single sequence: the deployment fixes S shards (REDIS_CLUSTER_SHARDS,
1..14), a channel belongs to shard crc32(channel) % S, and each shard keeps its own
epoch and sequence under one hash tag, so a publish stays one atomic script in one slot.
A stream's cursor is the vector of its positions on the shards it reads:
`<epoch><seq>` per shard, joined by '.', where the epoch is 5 base-36 characters
(the shard's digit, then 4 random ones) and seq is base 36. Its length is at most
1 + 14 * 14 = 197 bytes (S <= 14, seq < 36**8), and a single-Redis cursor
(`<epoch>-<seq>`, always with a '-') can never be mistaken for one.
See docs/ARCHITECTURE.md, "Redis Cluster", for why a resume from it is exact.
"""

from __future__ import annotations

import re
import secrets
import string
import zlib
from collections.abc import Iterable, Mapping
from typing import NamedTuple

from .cursor import CursorError, base36

MAX_SHARDS = 14  # keeps the cursor of a stream reading every shard under 200 bytes
SHARD_BITS = 4  # live frames carry (seq << SHARD_BITS) | shard in the hub's one int (pack)
_B36 = string.digits + string.ascii_lowercase
_ENTRY = re.compile(r"^([0-9a-z]{5})([0-9a-z]{1,8})$")
_SEQ_LIMIT = 36**8


def shard_of(channel: str, shards: int) -> int:
    """The channel's shard: stable across processes and restarts (crc32, not hash())."""
    return zlib.crc32(channel.encode()) % shards


def new_shard_epoch(shard: int) -> str:
    """A fresh epoch for `shard`: its digit and 4 random characters (1.7 million lifetimes)."""
    return _B36[shard] + "".join(secrets.choice(_B36) for _ in range(4))


def shard_in(epoch: str) -> int:
    """The shard an epoch belongs to (its first character)."""
    return _B36.index(epoch[0])


def pack(shard: int, seq: int) -> int:
    """A live frame's one int (Frame seq) for position `seq` of `shard`; 0 stays 'no cursor'."""
    return (seq << SHARD_BITS) | shard if seq else 0


def unpack(packed: int) -> tuple[int, int]:
    """(shard, seq) of a packed position."""
    return packed & ((1 << SHARD_BITS) - 1), packed >> SHARD_BITS


class Vector:
    """Positions per shard: {shard: (epoch, seq)}. What `id:` and /poll carry, and replay reads."""

    __slots__ = ("positions",)

    def __init__(self, positions: Mapping[int, tuple[str, int]] | None = None) -> None:
        self.positions: dict[int, tuple[str, int]] = dict(positions or {})

    def __str__(self) -> str:
        return ".".join(epoch + base36(seq, _B36) for _, (epoch, seq) in sorted(self.positions.items()))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vector) and other.positions == self.positions

    def __repr__(self) -> str:
        return f"Vector({self.positions!r})"

    def seq(self, shard: int, epoch: str) -> int | None:
        """The position on `shard` if it is of `epoch`, else None (unknown or another lifetime)."""
        held = self.positions.get(shard)
        return held[1] if held is not None and held[0] == epoch else None

    def advance(self, packed: int) -> bool:
        """Move to a live frame's position; False (a duplicate or an old one) if not past the held one.

        The stream drops a live frame this returns False for, as it drops live seq <= last
        replayed on one Redis: per shard, since sequences of shards are unrelated.
        """
        shard, seq = unpack(packed)
        held = self.positions.get(shard)
        if held is None or seq <= held[1]:
            return False
        self.positions[shard] = (held[0], seq)
        return True

    def restrict(self, shards: Iterable[int]) -> Vector:
        """Only the positions of `shards` (what a stream over some channels keeps)."""
        keep = set(shards)
        return Vector({k: v for k, v in self.positions.items() if k in keep})


def parse_vector(raw: str, shards: int) -> Vector:
    """A cluster cursor back into positions; CursorError (400 bad_cursor) if it is not one of ours."""
    if not raw or len(raw) > 1 + MAX_SHARDS * 14:
        raise CursorError("cursor is malformed; pass back an id the server gave you")
    positions: dict[int, tuple[str, int]] = {}
    for entry in raw.split("."):
        match = _ENTRY.fullmatch(entry)
        if match is None:
            raise CursorError("cursor is malformed; pass back an id the server gave you")
        epoch, seq = match.group(1), int(match.group(2), 36)
        shard = shard_in(epoch)
        if shard >= shards or shard in positions or seq >= _SEQ_LIMIT:
            raise CursorError("cursor is malformed; pass back an id the server gave you")
        positions[shard] = (epoch, seq)
    return Vector(positions)


def is_single_redis(raw: str) -> bool:
    """True for a cursor of a single-Redis deployment (`<epoch>-<seq>`): resumed as a reset of every channel."""
    return "-" in raw


def stamp(position: Vector, packed: int, body: bytes) -> bytes | None:
    """A live frame for one stream: `id: <its vector after this event>` then the shared body.

    None for a frame at or below the stream's position on its shard (replayed already, or a
    duplicate): the cluster's form of "drop live seq <= last replayed". Ephemeral frames
    (packed 0) pass without an id, as on one Redis. A shard the stream holds no position on
    (a channel added live, POST /subscriptions) starts at this frame, with the epoch its
    envelope's id names.
    """
    if not packed:
        return body
    shard, seq = unpack(packed)
    if shard not in position.positions:  # a channel added to a live stream, on a shard new to it
        at = body.find(b'{"id":"')
        if at < 0:
            return None
        position.positions[shard] = (body[at + 7 : at + 12].decode(), seq)
    elif not position.advance(packed):
        return None
    return b"id: " + str(position).encode() + b"\n" + body


class Stamped(NamedTuple):
    """A replayed frame already carrying its stream's id (what stream.py writes as `Record.frame`)."""

    frame: bytes


def stamp_replay(cursor: Vector | None, head: Vector, records: Iterable[tuple[int, bytes]]) -> tuple[list[bytes], Vector]:
    """Replayed frames (packed seq, body) with their ids, and the stream's position after them.

    Ids start from the cursor's positions where the shard's epoch is still the head's (else
    from the head's epoch at 0: the shard was reset); the position returned is the head, which
    every live frame must pass (see stamp).
    """
    start = Vector()
    for shard, (epoch, _) in head.positions.items():
        held = cursor.seq(shard, epoch) if cursor is not None else None
        start.positions[shard] = (epoch, held if held is not None else 0)
    frames = [f for f in (stamp(start, packed, body) for packed, body in records) if f is not None]
    return frames, Vector(head.positions)
