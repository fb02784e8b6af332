"""The control plane on Redis Cluster: RedisControl's mailboxes, throttles and flags as they are
(each is one key, so one slot), and the control channel as a shard channel read on the cluster
bus' feed (bus/cluster_feed.py): SPUBLISH in the first shard's slot, whose count is the number of
processes reached, as PUBLISH's is on one Redis.
"""

from __future__ import annotations

from collections.abc import Callable

import redis

from ..bus.redis_cluster import RedisClusterBus
from ..redis_errors import unavailable
from .redis import RedisControl


class ClusterControl(RedisControl):
    """See ControlStore."""

    def __init__(self, client: redis.RedisCluster, bus: RedisClusterBus) -> None:  # RedisControl.__init__ routes on a RedisFeed: not called
        self.client = client  # type: ignore[assignment]
        self.on_control: Callable[[bytes], None] | None = None
        self.channel = bus.layout.control.encode()
        bus.route(self.channel, self._received)

    def publish_control(self, payload: bytes) -> int:
        """See ControlStore.publish_control: SPUBLISH counts the readers (one per process) on its shard."""
        with unavailable():
            return int(self.client.execute_command("SPUBLISH", self.channel, payload))
