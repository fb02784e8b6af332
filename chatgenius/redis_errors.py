"""The one place redis-py's failures become BusUnavailable (503 `bus_unavailable` with Retry-After).

Every Redis-backed store (the bus, tickets and leases, presence, the control
plane and its flags) wraps its calls in `unavailable()`, so a failover looks
the same from every endpoint: the client is told to retry, nothing answers 500.
Unavailable means: no connection or no answer in time; a replica that refuses
writes (`READONLY`, a demoted primary during failover); a server loading its
data, busy in a script, without enough replicas (`min-replicas-to-write`),
cut off from its primary, or out of memory under `noeviction`. Any other error
reply is a bug and propagates as it is.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import redis
from redis import exceptions

from .bus.base import BusUnavailable

# Raised by redis-py for the conditions above (ReadOnlyError and BusyLoadingError are ResponseErrors).
UNAVAILABLE: tuple[type[BaseException], ...] = (
    redis.ConnectionError, redis.TimeoutError, exceptions.ReadOnlyError, exceptions.BusyLoadingError, OSError,
    # Redis Cluster mid-failover or resharding: CLUSTERDOWN, TRYAGAIN, too many redirections, a slot with no owner.
    exceptions.ClusterError, exceptions.TryAgainError, exceptions.SlotNotCoveredError,
)
# Error replies with no exception class of their own; inside MULTI they come back as EXECABORT
# with the queued command's reply quoted.
_REPLIES = ("READONLY", "NOREPLICAS", "MASTERDOWN", "LOADING", "BUSY", "OOM", "TRYAGAIN")


def is_unavailable(exc: BaseException) -> bool:
    """True when `exc` says Redis cannot serve (or take writes) now, rather than that we sent a bad command."""
    if isinstance(exc, UNAVAILABLE):
        return True
    if isinstance(exc, redis.ResponseError):
        text = str(exc)
        if text.startswith("EXECABORT") or text.startswith("Command # "):  # a queued command's reply, quoted
            return any(f" {reply} " in f" {text} " or f"{reply} " in text for reply in _REPLIES)
        return text.startswith(_REPLIES)
    return False


def translated(exc: BaseException, refused: str = "redis unavailable") -> BaseException:
    """BusUnavailable when `exc` says Redis cannot serve now, else `exc` itself. `refused` opens the
    message of an error reply (the publish script says "redis cannot take writes now")."""
    if isinstance(exc, UNAVAILABLE):
        return BusUnavailable(f"redis unavailable: {exc}")
    if is_unavailable(exc):
        return BusUnavailable(f"{refused}: {exc}")
    return exc


@contextmanager
def unavailable() -> Iterator[None]:
    """Turn Redis' unavailability inside the block into BusUnavailable; other errors pass unchanged."""
    try:
        yield
    except (redis.RedisError, OSError, exceptions.SlotNotCoveredError) as exc:
        failure = translated(exc)
        if failure is exc:
            raise
        raise failure from exc
