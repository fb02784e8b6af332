"""Chat features end to end on Redis Cluster: two hosts (gunicorn) on a three-master cluster.

Live subscription changes (a channel added on a shard the stream held no position on),
typing, presence and /admin/connections, all through the control plane and stores on the
cluster; then a resume from the stream's last id covers the added channel too. The per-user
connection cap and publish rate limit hold across the hosts.
"""

from __future__ import annotations

from support.http_json import get_json, post_json
from support.redis_cluster import RedisCluster
from support.service import bearer, publish
from support.sse_client import SSEClient

from chatgenius.bus.cluster_shards import Layout

from .conftest import PRESENCE_ENV
from .helpers import ADMIN, PUBLISHER, host, open_stream, token
from .test_presence import online
from .test_subscriptions import change, messages
from .test_typing import typing


def on_two_masters(cluster: RedisCluster) -> tuple[str, str]:
    layout, found, n = Layout(8), {}, 0
    while len(found) < 2:
        found.setdefault(cluster.master_of(layout.of(f"channel:cc{n}").slot).port, f"channel:cc{n}")
        n += 1
    first, second = found.values()
    return first, second


def test_subscriptions_typing_presence_and_admin_on_the_cluster(redis_cluster: RedisCluster, redis_cluster_nodes: str) -> None:
    one, two = on_two_masters(redis_cluster)
    env = {**PRESENCE_ENV, "REDIS_CLUSTER_NODES": redis_cluster_nodes}
    with host(None, workers=1, **env) as a, host(None, workers=1, **env) as b:
        pub = token(a.base_url, "cc-pub", permissions=PUBLISHER)
        alice = token(a.base_url, "cc-alice")
        stream = open_stream(b.base_url, alice, one)
        try:
            status, body = change(a.base_url, alice, {"connection_id": stream.id, "subscribe": [two], "unsubscribe": []})
            assert status == 200 and body["channels"] == sorted([one, two]), body
            ids = [publish(a.base_url, pub, two, {"n": 1}), publish(b.base_url, pub, one, {"n": 2})]
            got = messages(stream, 2)
            assert [f.json()["id"] for f in got] == ids
            assert len(got[-1].id.split(".")) == 2  # the id now holds a position on both shards

            assert typing(a.base_url, token(a.base_url, "cc-bob"), one) == (202, {"dropped": False})
            assert stream.next_of("user.typing").json()["data"] == {"user_id": "cc-bob"}
            assert online(a.base_url, alice, two) == ["cc-alice"]

            admin = token(a.base_url, "cc-admin", permissions=ADMIN)
            status, _, listing = get_json(f"{a.base_url}/admin/connections", bearer(admin))
            assert status == 200 and listing["processes"] == 2
            assert [row["channels"] for row in listing["connections"] if row["id"] == stream.id] == [sorted([one, two])]

            last = got[-1].id
            stream.close()
            missed = publish(a.base_url, pub, two, {"n": 3})
            resumed = open_stream(a.base_url, alice, f"{one},{two}", **{"Last-Event-ID": last})
            try:
                assert [f.json()["id"] for f in messages(resumed, 1)] == [missed]
                while (frame := resumed.client.next(1.0)) is not None:
                    assert frame.event != "message.created", frame  # no duplicate (presence frames may come)
            finally:
                resumed.close()
        finally:
            stream.close()


def test_connection_cap_and_publish_rate_hold_across_hosts_on_the_cluster(redis_cluster_nodes: str) -> None:
    # Leases (the per-user connection cap) and flask-limiter's counters live on the cluster,
    # so two hosts share them: a third stream is refused on either host, a sixth publish too.
    env = {"REDIS_CLUSTER_NODES": redis_cluster_nodes, "MAX_CONNECTIONS_PER_USER": "2", "RATE_LIMIT_PUBLISH": "5/minute"}
    with host(None, workers=1, **env) as a, host(None, workers=1, **env) as b:
        alice = token(a.base_url, "cl-alice")
        pub = token(a.base_url, "cl-pub", permissions=PUBLISHER)
        held = [open_stream(a.base_url, alice, "channel:cap"), open_stream(b.base_url, alice, "channel:cap")]
        try:
            for base in (a.base_url, b.base_url):
                third = SSEClient(f"{base}/stream?channels=channel:cap", bearer(alice), timeout=10)
                assert (third.status, third.json_body()["error"]) == (429, "connection_limit")
                third.close()
            event = {"channel": "channel:cap", "type": "message.created", "data": {}}
            answers = [post_json(f"{(a, b)[n % 2].base_url}/events", event, bearer(pub)) for n in range(6)]
            assert [status for status, _, _ in answers] == [201] * 5 + [429]
            assert answers[-1][2]["error"] == "rate_limited"
        finally:
            for stream in held:
                stream.client.close()
