"""Chat features end to end on Redis Cluster: two hosts (gunicorn) on a three-master cluster.

Live subscription changes (a channel added on a shard the stream held no position on),
typing, presence and /admin/connections, all through the control plane and stores on the
cluster; then a resume from the stream's last id covers the added channel too.
"""

from __future__ import annotations

from support.http_json import get_json
from support.redis_cluster import RedisCluster
from support.service import bearer, publish

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
