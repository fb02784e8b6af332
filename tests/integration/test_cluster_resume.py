"""Resume end to end on Redis Cluster: gunicorn (2 gevent workers) with REDIS_CLUSTER_NODES.

One stream over three channels whose shards live on three different masters is
cut and resumed with `Last-Event-ID` (a vector of per-shard positions): it gets
exactly the rest of every channel, in each channel's order, with no duplicate.
A single-Redis cursor resumes as a reset naming every channel.
"""

from __future__ import annotations

from support.gunicorn import Gunicorn
from support.http_json import get_json
from support.redis_cluster import RedisCluster
from support.service import bearer, dev_token, publish_batch, service_env

from chatgenius.bus.cluster_shards import Layout

from .test_foundation import open_stream
from .test_resume_and_reset import events

SHARDS = 8  # REDIS_CLUSTER_SHARDS' default


def three_masters(cluster: RedisCluster) -> list[str]:
    layout, found, n = Layout(SHARDS), {}, 0
    while len(found) < 3:
        name = f"channel:cl{n}"
        found.setdefault(cluster.master_of(layout.of(name).slot).port, name)
        n += 1
    return list(found.values())


def per_channel(frames) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for f in frames:
        body = f.json()
        out.setdefault(body["channel"], []).append(body["id"])
    return out


def test_a_stream_over_three_masters_resumes_exactly(redis_cluster: RedisCluster, redis_cluster_nodes: str) -> None:
    a, b, c = names = three_masters(redis_cluster)
    with Gunicorn(workers=2, env=service_env(None, REDIS_CLUSTER_NODES=redis_cluster_nodes)) as g:
        base = g.base_url
        token = dev_token(base, "resumer", ["channel:*"], ["publish:events"])
        client = open_stream(base, token, ",".join(names))
        order = [a, b, c, c, a, b, a, a, c, b] * 3
        ids = publish_batch(base, token, events(order))
        first = client.collect(12, timeout=5)
        client.close()
        assert all(f.id and "-" not in f.id and len(f.id) <= 200 for f in first)
        more = publish_batch(base, token, events([b, a, c, b]))
        published = per_channel_ids(order + [b, a, c, b], ids + more)

        resumed = open_stream(base, token, ",".join(names), **{"Last-Event-ID": first[-1].id})
        try:
            rest = resumed.collect(len(order) + 4 - 12, timeout=5)
            assert resumed.next(1.0) is None  # nothing more: no duplicate
            got = per_channel(first)
            for name, later in per_channel(rest).items():
                got.setdefault(name, []).extend(later)
            assert got == published
            status, _, polled = get_json(f"{base}/poll?channels={','.join(names)}&cursor={rest[-1].id}&timeout=0", bearer(token))
            assert status == 200 and polled["events"] == [] and polled["reset"] is False
        finally:
            resumed.close()

        old = open_stream(base, token, ",".join(names), **{"Last-Event-ID": "abcdef-12"})
        try:
            reset = old.next(5)
            assert reset.event == "system.reset" and sorted(reset.json()["channels"]) == sorted(names)
        finally:
            old.close()


def per_channel_ids(order: list[str], ids: list[str | None]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name, i in zip(order, ids, strict=True):
        assert i is not None
        out.setdefault(name, []).append(i)
    return out
