"""The ControlStore contract (reply mailboxes, throttles, runtime flags) on Redis Cluster."""

from __future__ import annotations

import pytest
from bus.test_cluster_contract import make_cluster_bus

from chatgenius.bus.control_redis import RedisControl

from .test_stores import test_control_mailbox_throttle_and_flags  # noqa: F401  (collected again, on the cluster)


@pytest.fixture
def control(redis_cluster_nodes: str):
    bus = make_cluster_bus(redis_cluster_nodes)
    yield RedisControl(bus.client)
    bus.close()
