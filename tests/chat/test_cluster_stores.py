"""The PresenceStore and ControlStore contracts on Redis Cluster (the suites of test_stores.py)."""

from __future__ import annotations

import pytest
from bus.test_cluster_contract import bus  # noqa: F401  (the cluster bus fixture)

from chatgenius.control.redis_cluster import ClusterControl
from chatgenius.presence.redis_cluster import ClusterPresence

from .test_stores import (  # noqa: F401  (collected again, on the cluster)
    test_a_join_within_the_grace_cancels_the_offline,
    test_a_lapsed_lease_goes_offline_after_ttl_plus_grace,
    test_control_mailbox_throttle_and_flags,
    test_first_lease_announces_online_once,
    test_offline_after_the_grace_once_the_last_lease_is_gone,
    test_presence_tracker_refreshes_and_rejoins,
    test_racing_sweepers_announce_once,
    test_the_control_channel_reaches_every_process_this_one_included,
    watch,
)


@pytest.fixture
def store(bus):  # noqa: F811  (the imported fixture)
    return ClusterPresence(bus)


@pytest.fixture
def control(bus):  # noqa: F811  (the imported fixture)
    return ClusterControl(bus.client, bus)
