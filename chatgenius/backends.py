"""The backend families: every seam's backend of one kind, built together, chosen once.

A family is one builder, `Settings -> Backends`: the bus (bus/), shared state
(state/), the presence store (presence/) and the control store (control/), all
of one kind and sharing its connections. `choose` picks the family from the
settings; create_app calls it once and nothing else asks which kind it got.
A family is one more builder and one line in `choose` (Redis Cluster is the
third: cluster_family).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .bus.base import EventBus
from .bus.cluster_shards import make_cluster_client
from .bus.memory import MemoryBus
from .bus.redis import RedisBus, make_clients
from .bus.redis_cluster import RedisClusterBus
from .bus.redis_feed import RedisFeed
from .config import Settings
from .control.base import ControlStore
from .control.memory import MemoryControl
from .control.redis import RedisControl
from .control.redis_cluster import ClusterControl
from .presence.base import PresenceStore
from .presence.memory import MemoryPresence
from .presence.redis import RedisPresence
from .presence.redis_cluster import ClusterPresence
from .service import reconnect_frame
from .state.base import SharedState
from .state.memory import MemoryState
from .state.redis import RedisState
from .state.redis_cluster import RedisClusterState


@dataclass(frozen=True, slots=True)
class Backends:
    """One family's backend for every seam."""

    bus: EventBus
    state: SharedState
    presence: PresenceStore
    control: ControlStore
    # flask-limiter's storage (web/ratelimit.py): its URI and options; one Redis shares the family's pool.
    limiter_storage: tuple[str, dict[str, object]] = ("memory://", {})


def memory_family(settings: Settings) -> Backends:
    """Everything in this process (`python app.py`, one worker)."""
    bus = MemoryBus(settings.history_maxlen, settings.history_ttl, idempotency_window=settings.idempotency_window)
    return Backends(bus, MemoryState(), MemoryPresence(bus), MemoryControl())


def redis_family(settings: Settings) -> Backends:
    """One Redis (or a Sentinel-managed primary): a bounded command pool shared by every seam, and
    one pub/sub connection (RedisFeed) carrying the bus' live channels and the control channel."""
    client, feed_client = make_clients(settings.redis_url, settings.redis_sentinels, settings.redis_sentinel_master)
    feed = RedisFeed(feed_client, ping_interval=min(5.0, max(0.5, settings.heartbeat_interval)))
    bus = RedisBus(
        client, feed, settings.history_maxlen, settings.history_ttl,
        lambda sub: reconnect_frame(settings.reconnect_retry_ms),  # a lost feed ends every local stream
        idempotency_window=settings.idempotency_window,
    )
    limiter = ("redis://", {"connection_pool": client.connection_pool})
    return Backends(bus, RedisState(client), RedisPresence(bus), RedisControl(client, feed), limiter)


def cluster_family(settings: Settings) -> Backends:
    """Redis Cluster (docs/ARCHITECTURE.md, "Redis Cluster"): one cluster client shared by every seam,
    and one sharded pub/sub connection per master the bus needs, the control channel among them.
    flask-limiter opens its own cluster client on the same nodes (limits cannot share this one)."""
    client = make_cluster_client(settings.redis_cluster_nodes)
    bus = RedisClusterBus(
        client, settings.redis_cluster_shards, settings.history_maxlen, settings.history_ttl,
        lambda sub: reconnect_frame(settings.reconnect_retry_ms), idempotency_window=settings.idempotency_window,
    )  # fmt: skip
    nodes = ",".join(f"{host}:{port}" for host, port in settings.redis_cluster_nodes)
    limiter = (f"redis+cluster://{nodes}", {})
    return Backends(bus, RedisClusterState(client), ClusterPresence(bus), ClusterControl(client, bus), limiter)


def choose(settings: Settings) -> Callable[[Settings], Backends]:
    """Redis Cluster when REDIS_CLUSTER_NODES is set, one Redis when REDIS_URL or sentinels are, else in-process."""
    if settings.redis_cluster_nodes:
        return cluster_family
    return redis_family if settings.redis_url or settings.redis_sentinels else memory_family


def build(settings: Settings) -> Backends:
    """The chosen family's backends (not started: create_app starts the bus once the app is wired)."""
    return choose(settings)(settings)
