"""chatgenius.publisher from a plain Python process (no Flask, no gevent) into a real gunicorn's streams,
on one Redis and on Redis Cluster."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
from support.gunicorn import Gunicorn
from support.procs import REPO_ROOT
from support.service import connected_stream, dev_token, publish, service_env
from support.sse_client import SSEClient

from chatgenius.config import ConfigError
from chatgenius.publisher import RedisPublisher

CHAN = "channel:general"
BOTH = "channel:general,channel:random"  # on Redis Cluster's default layout, shards on two masters

WORKER = textwrap.dedent(
    """
    import json, sys
    from chatgenius.publisher import PublishError, RedisPublisher

    with RedisPublisher.from_env() as events:
        one = events.publish("channel:general", "message.created", {"n": 1}, idempotency_key="job-1")
        again = events.publish("channel:general", "message.created", {"n": 1}, idempotency_key="job-1")
        more = events.publish_many([  # two channels on two masters of the cluster: one call per shard
            {"channel": "channel:general", "type": "message.created", "data": {"n": 2}},
            {"channel": "channel:random", "type": "message.created", "data": {"n": 4}},
        ])
        try:
            events.publish("channel:general", "message.created", {"n": 3}, idempotency_key="job-1")
            raise SystemExit("a conflicting key was accepted")
        except PublishError as exc:
            assert (exc.status, exc.code) == (422, "idempotency_conflict"), exc.body()
    assert one == again, (one, again)
    loaded = sorted({name.split(".")[0] for name in sys.modules} & {"flask", "werkzeug", "gevent", "greenlet"})
    assert not loaded, loaded
    print(json.dumps([one, *more]))
    """
)


def stream(g: Gunicorn, token: str, last_event_id: str | None = None) -> SSEClient:
    return connected_stream(g.base_url, token, BOTH, last_event_id)


@pytest.fixture(params=["redis", "cluster"])
def store_env(request: pytest.FixtureRequest) -> dict[str, str]:
    """Where the service and the publisher meet: REDIS_URL, or REDIS_CLUSTER_NODES (the session cluster, emptied)."""
    if request.param == "redis":
        return {"REDIS_URL": request.getfixturevalue("redis_url")}
    return {"REDIS_CLUSTER_NODES": request.getfixturevalue("redis_cluster_nodes")}


def test_a_process_without_flask_publishes_to_live_streams_and_history(store_env):
    with Gunicorn(workers=1, env=service_env(None, **store_env)) as g:
        token = dev_token(g.base_url, "alice", ["channel:*"], ["publish:events"])
        live = stream(g, token)
        try:
            before = publish(g.base_url, token, CHAN, {"n": 0})
            env = {k: v for k, v in os.environ.items() if not k.startswith(("HISTORY_", "IDEMPOTENCY_", "REDIS_"))}
            done = subprocess.run(
                [sys.executable, "-c", WORKER], cwd=REPO_ROOT, env=env | store_env,
                capture_output=True, text=True, timeout=60, check=False,
            )
            assert done.returncode == 0, done.stderr
            ids = json.loads(done.stdout)
            got = [live.read_until(lambda f: f.event == "message.created", 10) for _ in range(4)]
            # The frame id is the stream's cursor (on the cluster a vector, not the event's id);
            # the batch's two events travel through two masters: in either order.
            seen = [(f.json()["id"], f.json()["data"]["n"]) for f in got]
            assert seen[:2] == [(before, 0), (ids[0], 1)]
            assert sorted(seen[2:], key=lambda e: e[1]) == [(ids[1], 2), (ids[2], 4)]
        finally:
            live.close()
        resumed = stream(g, token, last_event_id=got[1].id)  # its events' cursors resume like any other
        try:
            frames = [resumed.read_until(lambda f: f.event == "message.created", 10) for _ in range(2)]
            assert sorted((f.json()["id"], f.json()["data"]["n"]) for f in frames) == sorted([(ids[1], 2), (ids[2], 4)])
        finally:
            resumed.close()


def test_from_env_validates_like_the_service():
    with pytest.raises(ConfigError, match=r"^REDIS_URL: required"):
        RedisPublisher.from_env({})
    with pytest.raises(ConfigError, match=r"^REDIS_URL: expected"):
        RedisPublisher.from_env({"REDIS_URL": "http://nope"})
    with pytest.raises(ConfigError, match=r"^IDEMPOTENCY_WINDOW: must be between"):
        RedisPublisher.from_env({"REDIS_URL": "redis://127.0.0.1:1", "IDEMPOTENCY_WINDOW": "0"})
    with pytest.raises(ConfigError, match=r"^REDIS_CLUSTER_NODES: expected"):
        RedisPublisher.from_env({"REDIS_CLUSTER_NODES": "nope"})
    with pytest.raises(ConfigError, match=r"^REDIS_CLUSTER_SHARDS: must be between"):
        RedisPublisher.from_env({"REDIS_CLUSTER_NODES": "127.0.0.1:1", "REDIS_CLUSTER_SHARDS": "15"})
