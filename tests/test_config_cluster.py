"""REDIS_CLUSTER_NODES and REDIS_CLUSTER_SHARDS: parsed once, refused when malformed."""

from __future__ import annotations

import pytest
from test_config import BASE

from chatgenius import config, gunicorn_checks
from chatgenius.config import ConfigError


def test_cluster_nodes_and_shards_are_parsed():
    s = config.load({**BASE, "REDIS_CLUSTER_NODES": "10.0.0.1:7000, 10.0.0.2:7001", "REDIS_CLUSTER_SHARDS": "12"})
    assert s.redis_cluster_nodes == (("10.0.0.1", 7000), ("10.0.0.2", 7001)) and s.redis_cluster_shards == 12
    assert config.load(BASE).redis_cluster_shards == 8


def test_cluster_nodes_count_as_redis_for_several_workers():
    assert config.load({**BASE, "WEB_CONCURRENCY": "4", "REDIS_CLUSTER_NODES": "h:7000"}).workers == 4


def test_cluster_nodes_count_as_redis_when_gunicorn_changes_the_worker_count():
    # A HUP re-applies the worker count (2 -> 2): refusing it looped, reverting forever, and no new worker started.
    assert not gunicorn_checks.refuse_more_workers({"REDIS_CLUSTER_NODES": "h:7000"}, 2, 2)
    assert gunicorn_checks.refuse_more_workers({}, 2, 1)


def test_the_undo_of_a_refused_worker_change_is_never_refused():
    # workers_changed undoes a refusal by setting the count back, which calls the hook again
    # with the two counts swapped: that call must pass, or they swap forever.
    assert not gunicorn_checks.refuse_more_workers({}, 2, 3)
    assert not gunicorn_checks.refuse_more_workers({}, 3, 3)


@pytest.mark.parametrize(("name", "raw"), [("REDIS_CLUSTER_NODES", "h"), ("REDIS_CLUSTER_SHARDS", "15"), ("REDIS_CLUSTER_SHARDS", "0")])
def test_malformed_cluster_settings_are_refused(name, raw):
    with pytest.raises(ConfigError, match=name):
        config.load({**BASE, name: raw})
