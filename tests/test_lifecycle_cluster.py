"""chatgenius.close(app) on Redis Cluster: the cluster family leaves no greenlet and no connection
on any node behind (its command client, one feed connection per master, flask-limiter's client)."""

from __future__ import annotations

from support.procs import wait_until
from support.redis_cluster import RedisCluster
from test_lifecycle import running_loops, use

import chatgenius
from chatgenius.factory import create_app


def connections(cluster: RedisCluster) -> int:
    """Connections every node holds, the probes' own excepted."""
    total = 0
    for node in cluster.live():
        with node.client() as probe:
            total += len(probe.client_list()) - 1
    return total


def test_closing_a_cluster_app_stops_its_greenlets_and_releases_every_node_connection(
    redis_cluster: RedisCluster, redis_cluster_nodes: str
) -> None:
    before_loops, before = running_loops(), connections(redis_cluster)
    env = {"AUTH_MODE": "dev", "REDIS_CLUSTER_NODES": redis_cluster_nodes, "HEARTBEAT_INTERVAL": "0.2", "LEASE_TTL": "1"}
    app = create_app(env=env)
    wait_until(lambda: app.extensions["chatgenius"].bus.health() is None, 10, message="cluster feed connected")
    use(app)
    assert connections(redis_cluster) > before
    chatgenius.close(app)
    chatgenius.close(app)  # idempotent
    assert running_loops() == before_loops
    wait_until(lambda: connections(redis_cluster) <= before, 5, message="the app's connections to every node closed")
