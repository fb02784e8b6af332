"""A burst of concurrent commands to one cluster node waits for a pooled connection instead of
failing: redis-py's default node pool refuses the 101st concurrent command ("Too many
connections"), which a burst of stream opens reached in the chat benchmark."""

from __future__ import annotations

import gevent

from chatgenius.bus.cluster_shards import make_cluster_client


def test_a_burst_on_one_node_queues_for_the_pool(redis_cluster_nodes):
    nodes = [(h, int(p)) for h, p in (a.rsplit(":", 1) for a in redis_cluster_nodes.split(","))]
    client = make_cluster_client(nodes)
    try:
        # 150 commands that each hold a connection for 0.2 s, all on one slot: 5 rounds of 32.
        calls = [gevent.spawn(client.blpop, ["{burst}q"], 0.2) for _ in range(150)]
        gevent.joinall(calls, timeout=30)
        assert [c.exception for c in calls if c.exception] == []
        node = client.get_node_from_key("{burst}q")
        assert node.redis_connection.connection_pool.max_connections == 32
    finally:
        for n in client.get_nodes():  # the node pools were given to their clients: close() leaves them open
            n.redis_connection.connection_pool.disconnect()
        client.close()
