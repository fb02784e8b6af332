"""Publish from any Python process (workers, cron jobs) with only a Redis URL: no Flask, no gevent.

    from chatgenius.publisher import RedisPublisher
    events = RedisPublisher.from_env()          # REDIS_URL or REDIS_CLUSTER_NODES, HISTORY_MAXLEN, ...
    events.publish("channel:general", "message.created", {"text": "build done"}, idempotency_key="build-812")

It runs the service's own publish script (bus/redis_publish.py) on the service's Redis (on
Redis Cluster, once per shard: bus/cluster_shards.py), so its events get ids from the same
sequence, land in the same history and reach every stream like POST /events' do. Keep
HISTORY_MAXLEN, HISTORY_TTL and REDIS_CLUSTER_SHARDS equal to the service's (from_env reads
the same variables). Not counted by the service's rate limit or metrics.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import redis

from . import config
from .bus.cluster_shards import Layout, ShardedPublish, make_cluster_client
from .bus.redis_publish import PublishScript
from .publishing import APP_SCOPE, Publisher, PublishError

__all__ = ["PublishError", "RedisPublisher"]

ENV = ("REDIS_URL", "REDIS_CLUSTER_NODES", "REDIS_CLUSTER_SHARDS", "HISTORY_MAXLEN", "HISTORY_TTL", "IDEMPOTENCY_WINDOW", "MAX_EVENT_BYTES")


class RedisPublisher(Publisher):
    """See Publisher: `publish` and `publish_many`, raising PublishError; thread-safe (one pool)."""

    def __init__(
        self,
        client: redis.Redis | redis.RedisCluster,
        *,
        history_maxlen: int = config.Settings.history_maxlen,
        history_ttl: int = config.Settings.history_ttl,
        idempotency_window: int = config.Settings.idempotency_window,
        max_event_bytes: int = config.Settings.max_event_bytes,
        redis_cluster_shards: int = config.Settings.redis_cluster_shards,
        scope: str = APP_SCOPE,
    ) -> None:
        args = (history_maxlen, history_ttl, idempotency_window)
        if isinstance(client, redis.RedisCluster):
            backend: PublishScript | ShardedPublish = ShardedPublish(Layout(redis_cluster_shards), client, *args)
        else:
            backend = PublishScript(client, *args)
        super().__init__(backend, max_event_bytes, scope=scope)
        self.client = client

    @classmethod
    def from_url(cls, url: str, **options: object) -> RedisPublisher:
        """A publisher on the Redis at `url` (redis://, rediss:// or unix://); `options` as __init__'s."""
        checked = config.parse({"REDIS_URL": url}, ("REDIS_URL",)).get("redis_url")
        if not isinstance(checked, str):
            raise config.ConfigError("REDIS_URL: required to publish from outside the service")
        extra: dict[str, object] = {} if checked.startswith("unix://") else {"socket_keepalive": True}
        client = redis.Redis.from_url(checked, socket_connect_timeout=3, socket_timeout=10, health_check_interval=0, **extra)
        return cls(client, **options)  # type: ignore[arg-type]

    @classmethod
    def from_cluster(cls, nodes: str, **options: object) -> RedisPublisher:
        """A publisher on the Redis Cluster found from `nodes` (REDIS_CLUSTER_NODES' `host:port,...`)."""
        startup = config.parse({"REDIS_CLUSTER_NODES": nodes}, ("REDIS_CLUSTER_NODES",)).get("redis_cluster_nodes")
        if not startup:
            raise config.ConfigError("REDIS_CLUSTER_NODES: required to publish to a cluster")
        return cls(make_cluster_client(startup), **options)  # type: ignore[arg-type]

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, scope: str = APP_SCOPE) -> RedisPublisher:
        """A publisher configured like the service: REDIS_CLUSTER_NODES (and REDIS_CLUSTER_SHARDS) when
        set, else REDIS_URL (required), HISTORY_MAXLEN, HISTORY_TTL, IDEMPOTENCY_WINDOW, MAX_EVENT_BYTES;
        a bad value is config.ConfigError naming the variable."""
        values = config.parse(os.environ if env is None else env, ENV)
        nodes = values.pop("redis_cluster_nodes", None)
        if nodes:  # as the service chooses (backends.choose): the cluster when its nodes are set
            values.pop("redis_url", None)
            return cls(make_cluster_client(nodes), scope=scope, **values)  # type: ignore[arg-type]
        values.pop("redis_cluster_shards", None)
        return cls.from_url(str(values.pop("redis_url", "")), scope=scope, **values)

    def close(self) -> None:
        """Close the publisher's Redis connections."""
        self.client.close()

    def __enter__(self) -> RedisPublisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
