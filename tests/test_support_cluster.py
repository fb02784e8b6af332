"""The Redis Cluster runner itself: it forms, routes keys by slot, and fails over after kill -9."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from support.procs import wait_until
from support.redis_cluster import RedisCluster, parse_nodes


def test_parse_nodes_reads_slots_roles_and_failures() -> None:
    text = (
        "a1 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-5460 [5461->-b2]\n"
        "b2 127.0.0.1:7001@17001 master,fail - 0 0 2 disconnected 5461-10922 12000\n"
        "c3 127.0.0.1:7002@17002 slave a1 0 0 1 connected\n"
    )
    a, b, c = parse_nodes(text)
    assert (a.master, a.failed, a.slots) == (True, False, ((0, 5460),))
    assert (b.failed, b.slots) == (True, ((5461, 10922), (12000, 12000)))
    assert (c.master, c.master_id, c.port) == (False, "a1", 7002)


def test_the_cluster_has_three_masters_each_with_a_replica(redis_cluster: RedisCluster) -> None:
    masters = redis_cluster.masters()
    assert len(masters) == 3
    views = redis_cluster.view()
    for m in masters:
        master_id = next(v.node_id for v in views if v.port == m.port)
        assert any(v.master_id == master_id for v in views)
    with redis_cluster.client() as c:
        for n in range(30):
            c.set(f"k{n}", n)
        assert [int(c.get(f"k{n}")) for n in range(30)] == list(range(30))
    owners = {redis_cluster.master_of(redis_cluster.slot(f"k{n}")).port for n in range(30)}
    assert len(owners) == 3  # 30 keys spread over all masters


@pytest.mark.slow
def test_kill_9_of_a_master_promotes_its_replica(make_redis_cluster: Callable[..., RedisCluster]) -> None:
    cluster = make_redis_cluster()
    slot = cluster.slot("k")
    victim = cluster.master_of(slot)
    with cluster.client() as c:
        c.set("k", b"v")
    views = cluster.view()
    victim_id = next(v.node_id for v in views if v.port == victim.port)
    replica = next(v for v in views if v.master_id == victim_id)
    with cluster.node(replica.port).client() as r:
        r.execute_command("READONLY")
        wait_until(lambda: r.execute_command("GET", "k") == b"v", 5, message="replicated")
    new = cluster.kill_master(victim)
    assert new.port == replica.port and not victim.running
    assert cluster.master_of(slot) is new
    with cluster.client() as c:
        assert c.get("k") == b"v"
