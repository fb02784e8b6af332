"""Shared state on Redis Cluster: RedisState's keys already live in one slot each (tickets are one
key, a user's leases one ZSET), so only the batched refresh differs: redis-py refuses scripts in a
cluster pipeline, so each owner's refresh is its own script call, run concurrently."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import gevent

from ..redis_errors import unavailable
from .redis import RedisState, lease_key


class RedisClusterState(RedisState):
    """See SharedState; RedisState on a redis.RedisCluster client."""

    def refresh_leases(self, leases: Sequence[tuple[str, str]], ttl: float) -> None:
        """See SharedState.refresh_leases: one script call per owner (each in its owner's slot)."""
        by_owner: dict[str, list[str]] = defaultdict(list)
        for owner, lease in leases:
            by_owner[owner].append(lease)
        calls = [gevent.spawn(self._refresh, keys=[lease_key(owner)], args=[int(ttl * 1000), *ids]) for owner, ids in by_owner.items()]
        with unavailable():
            gevent.joinall(calls, raise_error=True)
