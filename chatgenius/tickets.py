"""Stream tickets: how a browser EventSource, which cannot send headers, proves who it is.

`POST /tickets` (with a Bearer token) gets a random ticket, valid once, for at
most `ttl` seconds and never past the token's own `exp`; `GET /stream?ticket=`
redeems it on any worker. The store holds a SHA-256 of the ticket mapped to
the verified claims needed to rebuild the Identity, so a JWT never has to
travel in a URL and a dump of the store yields no usable ticket.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time

from .auth import Identity
from .state.base import SharedState

MAX_TICKET_LENGTH = 128


def _digest(ticket: str) -> str:
    return hashlib.sha256(ticket.encode("utf-8", "surrogatepass")).hexdigest()


def _dump(identity: Identity) -> str:
    return json.dumps(
        {"sub": identity.sub, "patterns": list(identity.patterns), "permissions": sorted(identity.permissions), "exp": identity.exp},
        separators=(",", ":"),
    )


def _load(raw: str) -> Identity:
    data = json.loads(raw)
    return Identity(
        sub=data["sub"],
        patterns=tuple(data["patterns"]),
        permissions=frozenset(data["permissions"]),
        exp=data["exp"],
    )


class Tickets:
    """Issue and redeem single-use tickets bound to one verified user."""

    def __init__(self, state: SharedState, ttl: float) -> None:
        self._state = state
        self._ttl = ttl

    def issue(self, identity: Identity, now: float | None = None) -> tuple[str, int] | None:
        """A new ticket and its lifetime in whole seconds; None if the token expires within a second."""
        now = time.time() if now is None else now
        ttl = self._ttl if identity.exp is None else min(self._ttl, identity.exp - now)
        if ttl < 1:
            return None
        ticket = secrets.token_urlsafe(32)
        self._state.put_ticket(_digest(ticket), _dump(identity), ttl)
        return ticket, int(ttl)

    def redeem(self, ticket: str) -> Identity | None:
        """The identity the ticket was issued to, exactly once; None for an unknown, used or expired one."""
        if not ticket or len(ticket) > MAX_TICKET_LENGTH:
            return None
        raw = self._state.take_ticket(_digest(ticket))
        return _load(raw) if raw is not None else None
