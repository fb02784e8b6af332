"""Presence on Redis: leases in sorted sets, every change a Lua script (see PresenceStore).

Keys (members hold NUL separators; neither channel names nor user ids can):
- `cg:pl`  ZSET `<channel>\\0<user>\\0<connection>` -> lease expiry, ms of Redis' clock
- `cg:px`  ZSET the same members at score 0: "does this user hold another lease here?" is one
           ZRANGEBYLEX, O(log n) however crowded the channel
- `cg:pd`  ZSET `<channel>\\0<user>` -> when that user's offline is due (ms)
- `cg:pu:{channel}` SET the users announced online on the channel (GET /presence reads it)

The scripts that announce (join, offline) embed the bus' lua/publish.lua as a local function, so a
state change and its event are one atomic step: a sweeper's offline can never be stored
after the online of a reconnect that beat it. Like the bus, this assumes one Redis (or a
Sentinel-managed primary); presence/redis_cluster.py is the Redis Cluster layout.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import resources

from ..bus.redis import RedisBus
from ..bus.redis_publish import script_source
from ..redis_errors import unavailable
from .base import OFFLINE, ONLINE, DraftFor, Lease

LEASES = "cg:pl"
INDEX = "cg:px"
DUE = "cg:pd"
ONLINE_PREFIX = "cg:pu:"


def online_key(channel: str) -> str:
    """The set of a channel's online users; braced so it shares the channel's cluster slot."""
    return ONLINE_PREFIX + "{" + channel + "}"


def _lua(name: str) -> str:
    return resources.files(__package__).joinpath(f"lua/{name}").read_text()


def _with_publish(name: str) -> str:
    """The script `name` with publish.lua available as `publish(KEYS, ARGV)`."""
    return "local function publish(KEYS, ARGV)\n" + script_source() + "\nend\n" + _lua(name)


def _member(lease: Lease) -> str:
    return f"{lease.channel}\0{lease.user}\0{lease.connection}"


def _user_range(channel: str, user: str) -> tuple[str, str]:
    """ZRANGEBYLEX bounds of every lease of `user` on `channel`."""
    return f"[{channel}\0{user}\0", f"({channel}\0{user}\1"


class RedisPresence:
    """See PresenceStore; shares the bus' client (no extra connections) and its publish script."""

    def __init__(self, bus: RedisBus, sweep_limit: int = 200) -> None:
        self.bus = bus
        self.client = bus.client
        self._join = self.client.register_script(_with_publish("presence_join.lua"))
        self._offline = self.client.register_script(_with_publish("presence_offline.lua"))
        self._leave = self.client.register_script(_lua("presence_leave.lua"))
        self._refresh = self.client.register_script(_lua("presence_refresh.lua"))
        self._sweep = self.client.register_script(_lua("presence_sweep.lua"))
        self._limit = sweep_limit

    def join(self, leases: Sequence[Lease], ttl: float, draft_for: DraftFor) -> list[bool]:
        """See PresenceStore.join: one script per lease, all in one round trip."""
        if not leases:
            return []
        with unavailable():
            pipe = self.client.pipeline(transaction=False)
            for lease in leases:
                pkeys, pargs = self.bus.publish_call([draft_for(lease.channel, lease.user, ONLINE)])
                keys = [LEASES, INDEX, DUE, online_key(lease.channel), *pkeys]
                args = [_member(lease), lease.user, f"{lease.channel}\0{lease.user}", int(ttl * 1000), *pargs]
                self._join(keys=keys, args=args, client=pipe)
            return [bool(r) for r in pipe.execute()]

    def leave(self, leases: Sequence[Lease], grace: float) -> None:
        """See PresenceStore.leave."""
        if not leases:
            return
        with unavailable():
            pipe = self.client.pipeline(transaction=False)
            for lease in leases:
                lo, hi = _user_range(lease.channel, lease.user)
                keys = [LEASES, INDEX, DUE, online_key(lease.channel)]
                args = [_member(lease), lease.user, f"{lease.channel}\0{lease.user}", int(grace * 1000), lo, hi]
                self._leave(keys=keys, args=args, client=pipe)
            pipe.execute()

    def refresh(self, leases: Sequence[Lease], ttl: float) -> list[Lease]:
        """See PresenceStore.refresh: one script call for every lease of the process."""
        if not leases:
            return []
        by_member = {_member(lease): lease for lease in leases}
        with unavailable():
            missing = self._refresh(keys=[LEASES], args=[int(ttl * 1000), *by_member])
        return [by_member[m.decode()] for m in missing if m.decode() in by_member]

    def sweep(self, grace: float, draft_for: DraftFor, limit: int = 200) -> list[tuple[str, str]]:
        """See PresenceStore.sweep: list what is due, then claim and announce each atomically."""
        with unavailable():
            due = self._sweep(keys=[LEASES, INDEX, DUE], args=[int(grace * 1000), limit, ONLINE_PREFIX])
            if not due:
                return []
            pairs = [tuple(m.decode().split("\0", 1)) for m in due]
            pipe = self.client.pipeline(transaction=False)
            for channel, user in pairs:
                lo, hi = _user_range(channel, user)
                pkeys, pargs = self.bus.publish_call([draft_for(channel, user, OFFLINE)])
                keys = [DUE, INDEX, online_key(channel), *pkeys]
                self._offline(keys=keys, args=[f"{channel}\0{user}", user, lo, hi, *pargs], client=pipe)
            claimed = pipe.execute()
        return [(c, u) for (c, u), won in zip(pairs, claimed, strict=True) if won]

    def online(self, channel: str) -> list[str]:
        """See PresenceStore.online."""
        with unavailable():
            return sorted(m.decode() for m in self.client.smembers(online_key(channel)))
