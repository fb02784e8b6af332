"""Presence on Redis Cluster: presence/redis.py's scripts, with every key in the channel's shard.

The single-Redis layout has three deployment-wide sorted sets (leases, their lex index, due
offlines); here each shard has its own three, under its hash tag, beside the shard's publish
keys, so a presence change and its `user.presence` event stay one atomic script in one slot.
The per-channel set of announced users is `cg:pu:{tag}:{channel}` (presence_sweep.lua builds
it from the prefix and the channel). Sweeps and refreshes run per shard; redis-py refuses
scripts in a cluster pipeline, so calls that were one pipeline are concurrent calls here.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence

import gevent

from ..bus.cluster_shards import Shard, spublish_source
from ..bus.redis_cluster import RedisClusterBus
from ..redis_errors import unavailable
from .base import OFFLINE, ONLINE, DraftFor, Lease
from .redis import _lua, _member, _user_range


def _with_spublish(name: str) -> str:
    return "local function publish(KEYS, ARGV)\n" + spublish_source() + "\nend\n" + _lua(name)


def _keys(shard: Shard) -> list[str]:
    """The shard's lease expiries, lease index and due offlines (presence/redis.py's cg:pl, cg:px, cg:pd)."""
    return ["cg:pl:{" + shard.tag + "}", "cg:px:{" + shard.tag + "}", "cg:pd:{" + shard.tag + "}"]


def _online_prefix(shard: Shard) -> str:
    return "cg:pu:{" + shard.tag + "}:"


def _online_key(shard: Shard, channel: str) -> str:
    return _online_prefix(shard) + "{" + channel + "}"


def _all(calls: list[Callable[[], object]]) -> list[object]:
    """Run the calls concurrently (each its own round trip); their results in order."""
    greenlets = [gevent.spawn(c) for c in calls]
    with unavailable():
        gevent.joinall(greenlets, raise_error=True)  # returns them in the order they finished
    return [g.value for g in greenlets]


class ClusterPresence:
    """See PresenceStore; shares the cluster bus' client and its per-shard publish keys."""

    def __init__(self, bus: RedisClusterBus, sweep_limit: int = 200) -> None:
        self.bus = bus
        self.client = bus.client
        self._join = self.client.register_script(_with_spublish("presence_join.lua"))
        self._offline = self.client.register_script(_with_spublish("presence_offline.lua"))
        self._leave = self.client.register_script(_lua("presence_leave.lua"))
        self._refresh = self.client.register_script(_lua("presence_refresh.lua"))
        self._sweep = self.client.register_script(_lua("presence_sweep.lua"))
        self._limit = sweep_limit

    def join(self, leases: Sequence[Lease], ttl: float, draft_for: DraftFor) -> list[bool]:
        """See PresenceStore.join: one script per lease, concurrently."""

        def call(lease: Lease) -> Callable[[], object]:
            shard = self.bus.layout.of(lease.channel)
            pkeys, pargs = self.bus.publish_call([draft_for(lease.channel, lease.user, ONLINE)])
            keys = [*_keys(shard), _online_key(shard, lease.channel), *pkeys]
            args = [_member(lease), lease.user, f"{lease.channel}\0{lease.user}", int(ttl * 1000), *pargs]
            return lambda: self._join(keys=keys, args=args)

        return [bool(r) for r in _all([call(lease) for lease in leases])]

    def leave(self, leases: Sequence[Lease], grace: float) -> None:
        """See PresenceStore.leave."""

        def call(lease: Lease) -> Callable[[], object]:
            shard = self.bus.layout.of(lease.channel)
            lo, hi = _user_range(lease.channel, lease.user)
            keys = [*_keys(shard), _online_key(shard, lease.channel)]
            args = [_member(lease), lease.user, f"{lease.channel}\0{lease.user}", int(grace * 1000), lo, hi]
            return lambda: self._leave(keys=keys, args=args)

        _all([call(lease) for lease in leases])

    def refresh(self, leases: Sequence[Lease], ttl: float) -> list[Lease]:
        """See PresenceStore.refresh: one script call per shard holding leases of this process."""
        by_shard: dict[Shard, dict[str, Lease]] = defaultdict(dict)
        for lease in leases:
            by_shard[self.bus.layout.of(lease.channel)][_member(lease)] = lease
        shards = list(by_shard)
        missing = _all([lambda s=s: self._refresh(keys=_keys(s)[:1], args=[int(ttl * 1000), *by_shard[s]]) for s in shards])
        return [by_shard[s][m.decode()] for s, gone in zip(shards, missing, strict=True) for m in gone]  # type: ignore[attr-defined]

    def sweep(self, grace: float, draft_for: DraftFor, limit: int = 200) -> list[tuple[str, str]]:
        """See PresenceStore.sweep, shard by shard: list what is due, then claim and announce each."""
        out: list[tuple[str, str]] = []
        for shard in self.bus.layout.shards:
            with unavailable():
                due = self._sweep(keys=_keys(shard), args=[int(grace * 1000), limit, _online_prefix(shard)])
            pairs = [tuple(m.decode().split("\0", 1)) for m in due]

            def call(channel: str, user: str, shard: Shard = shard) -> Callable[[], object]:
                lo, hi = _user_range(channel, user)
                pkeys, pargs = self.bus.publish_call([draft_for(channel, user, OFFLINE)])
                keys = [_keys(shard)[2], _keys(shard)[1], _online_key(shard, channel), *pkeys]
                return lambda: self._offline(keys=keys, args=[f"{channel}\0{user}", user, lo, hi, *pargs])

            claimed = _all([call(c, u) for c, u in pairs])
            out += [(c, u) for (c, u), won in zip(pairs, claimed, strict=True) if won]
        return out

    def online(self, channel: str) -> list[str]:
        """See PresenceStore.online: the channel's announced users, from its shard's set."""
        with unavailable():
            return sorted(m.decode() for m in self.client.smembers(_online_key(self.bus.layout.of(channel), channel)))
