"""Redis faults under a steady publish: every client's received set checked against the published set.

Each case: real gunicorn (2 gevent workers), a private redis-server, clients that
reconnect with their cursor as the contract asks, a publisher at 20 events/s.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator

import gevent
import pytest
from support.actors import Publisher, ResilientClient
from support.gunicorn import Gunicorn
from support.http_json import get_json
from support.procs import wait_until
from support.redis_server import RedisServer
from support.service import dev_token, service_env

CHAN = "channel:faults"


def start_actors(base: str, clients: int = 4) -> tuple[Publisher, list[ResilientClient]]:
    token = dev_token(base, "svc", ["channel:*"], ["publish:events"])
    readers = [ResilientClient(base, dev_token(base, f"u{i}", ["channel:*"]), CHAN).start() for i in range(clients)]
    wait_until(lambda: all(r.connected for r in readers), 10, message="clients connected")
    return Publisher(base, token, CHAN).start(), readers


def settle(pub: Publisher, readers: list[ResilientClient], timeout: float = 20, want: set[int] | None = None) -> None:
    """Stop publishing, then wait until every client has every wanted (default: acknowledged) event."""
    pub.stop()
    want = set(pub.acked) if want is None else want
    wait_until(lambda: all(want <= set(r.received) for r in readers), timeout,
               message=f"every client receives all {len(want)} acknowledged events; clients: "
               + "; ".join(f"missing={sorted(want - set(r.received))[:5]} endings={r.endings[-5:]} resets={r.resets}"
                           for r in readers))
    gevent.sleep(0.5)  # let any duplicate show up before we count
    for r in readers:
        r.stop()


def assert_exactly_once(pub: Publisher, readers: list[ResilientClient]) -> None:
    for r in readers:
        dupes = [n for n, c in Counter(r.received).items() if c > 1]
        assert not dupes, f"duplicates: {dupes[:10]}"
        assert set(pub.acked) <= set(r.received), "an acknowledged event was lost"
        assert set(r.received) <= set(pub.acked) | set(pub.failed), "received an event nobody published"


@pytest.fixture
def redis_plain(make_redis) -> RedisServer:
    return make_redis()


def deployment(redis: RedisServer) -> Iterator[Gunicorn]:
    with Gunicorn(workers=2, env=service_env(redis.url, HEARTBEAT_INTERVAL="1")) as g:
        yield g


@pytest.mark.slow
def test_redis_killed_without_persistence_resets_old_cursors_and_new_events_flow(make_redis):
    redis = make_redis()
    for g in deployment(redis):
        pub, readers = start_actors(g.base_url)
        wait_until(lambda: len(pub.acked) >= 20, 10)
        redis.kill()
        wait_until(lambda: all("system.reconnect" in r.endings for r in readers), 10,
                   message="every stream told to reconnect when the feed is lost")
        status, _, ready = get_json(f"{g.base_url}/readyz")
        assert status == 503 and ready["reason"]
        before = set(pub.acked)
        redis.start()
        wait_until(lambda: get_json(f"{g.base_url}/readyz")[0] == 200, 15, message="ready again")
        wait_until(lambda: len(pub.acked) >= len(before) + 20, 15, message="publishing works again")
        pub.stop()
        new = set(pub.acked) - before  # what the wiped Redis could not have lost
        settle(pub, readers, want=new)
        for r in readers:
            assert r.resets >= 1, "a cursor from the lost epoch must get system.reset"
            assert new <= set(r.received)
            assert not [n for n, c in Counter(r.received).items() if c > 1], "no duplicates"
        epochs = {i.rsplit("-", 1)[0] for i in pub.acked.values()}
        assert len(epochs) == 2, "the wiped Redis must start a new epoch"


@pytest.mark.slow
def test_redis_killed_with_aof_loses_nothing(make_redis):
    redis = make_redis(appendonly=True)
    for g in deployment(redis):
        pub, readers = start_actors(g.base_url)
        wait_until(lambda: len(pub.acked) >= 20, 10)
        redis.kill()
        gevent.sleep(1.0)
        redis.start()
        wait_until(lambda: get_json(f"{g.base_url}/readyz")[0] == 200, 15, message="ready again")
        wait_until(lambda: len(pub.acked) >= 60, 20)
        settle(pub, readers)
        assert_exactly_once(pub, readers)
        assert all(r.resets == 0 for r in readers), "with AOF the history survives: no reset"
        # A restarted Redis is another process: the writer fence starts a new epoch that continues
        # the old one (no reset above), once for all workers.
        assert len({i.rsplit("-", 1)[0] for i in pub.acked.values()}) == 2


@pytest.mark.slow
def test_redis_paused_longer_than_the_heartbeat_loses_nothing(make_redis):
    redis = make_redis()
    for g in deployment(redis):
        pub, readers = start_actors(g.base_url)
        wait_until(lambda: len(pub.acked) >= 20, 10)
        endings = [len(r.endings) for r in readers]
        redis.pause()
        paused_at = time.monotonic()
        # The pause must be noticed, not slept through: the readers' unanswered PING ends every stream.
        wait_until(lambda: all("system.reconnect" in r.endings[n:] for r, n in zip(readers, endings, strict=True)), 15,
                   message="every stream told to reconnect while Redis is frozen")
        assert redis.paused, "Redis was still frozen when the streams were ended"
        acked_while_paused = len(pub.acked)
        gevent.sleep(max(0.0, 4.0 - (time.monotonic() - paused_at)))  # four heartbeat intervals of a frozen Redis
        assert len(pub.acked) == acked_while_paused, "nothing can be acknowledged by a frozen Redis"
        redis.resume()
        wait_until(lambda: len(pub.acked) >= 80, 30)
        settle(pub, readers)
        assert_exactly_once(pub, readers)


@pytest.mark.slow
def test_worker_sigkilled_clients_resume_on_the_other_worker(make_redis):
    redis = make_redis()
    for g in deployment(redis):
        pub, readers = start_actors(g.base_url, clients=8)
        wait_until(lambda: len(pub.acked) >= 20, 10)
        # The victim is a worker that holds streams (gevent workers accept unevenly).
        served = Counter(r["pid"] for r in g.json_logs() if r.get("event") == "connection.open")
        victim = served.most_common(1)[0][0]
        g.kill_worker(victim)
        wait_until(lambda: victim not in g.worker_pids() and len(g.worker_pids()) == 2, 15, message="worker replaced")
        wait_until(lambda: len(pub.acked) >= 80, 20)
        settle(pub, readers)
        assert_exactly_once(pub, readers)
        assert sum(r.connects for r in readers) > len(readers), "the victim's clients reconnected"


@pytest.mark.slow
def test_bad_events_in_a_batch_change_nothing_for_the_others(make_redis):
    from support.service import bearer
    from support.sse_client import post_json

    redis = make_redis()
    for g in deployment(redis):
        pub, readers = start_actors(g.base_url, clients=2)
        wait_until(lambda: len(pub.acked) >= 10, 10)
        good = {"channel": CHAN, "type": "message.created", "data": {"n": -1}}
        oversized = {**good, "data": {"n": -2, "pad": "x" * 70_000}}
        malformed = {**good, "type": "message.bogus"}
        token = dev_token(g.base_url, "svc2", ["channel:*"], ["publish:events"])
        for bad in (oversized, malformed):
            status, _, body = post_json(f"{g.base_url}/events", {"events": [good, bad, good]}, bearer(token))
            assert status in (400, 413) and body["error"]
        wait_until(lambda: len(pub.acked) >= 40, 10)
        settle(pub, readers)
        assert_exactly_once(pub, readers)
        assert all(-1 not in r.received and -2 not in r.received for r in readers)
