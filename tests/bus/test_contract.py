"""The one contract suite every bus backend must pass (see EventBus in chatgenius/bus/base.py).

Parametrized over memory and a real redis-server; a backend that cannot pass it
is not a backend.
"""

from __future__ import annotations

import gc
import time

import gevent
import pytest
import redis

from chatgenius.bus.base import BusUnavailable, EventBus, IdempotencyConflict, Quota, QuotaExceeded
from chatgenius.bus.memory import MemoryBus
from chatgenius.bus.redis import RedisBus, make_clients
from chatgenius.bus.redis_feed import FeedReplies, RedisFeed
from chatgenius.cursor import Cursor
from chatgenius.events import draft
from chatgenius.state.base import SharedState
from chatgenius.state.memory import MemoryState
from chatgenius.state.redis import RedisState
from chatgenius.subscriber import Subscriber

RECONNECT = b"event: system.reconnect\ndata: {}\n\n"


def make_bus(kind: str, redis_url: str | None, maxlen: int = 100, ttl: int = 3600, window: int = 600, clock=time.monotonic) -> EventBus:
    if kind == "memory":
        return MemoryBus(maxlen, ttl, clock, idempotency_window=window)
    client, feed = make_clients(redis_url, (), "")
    bus = RedisBus(client, RedisFeed(feed, ping_interval=0.5), maxlen, ttl, lambda sub: RECONNECT, idempotency_window=window)
    bus.start()
    deadline = time.monotonic() + 5
    while bus.health() is not None:
        assert time.monotonic() < deadline, "redis bus reader did not connect"
        gevent.sleep(0.02)
    return bus


@pytest.fixture(params=["memory", "redis"])
def kind(request) -> str:
    return request.param


@pytest.fixture
def bus(kind, request):
    url = request.getfixturevalue("redis_url") if kind == "redis" else None
    b = make_bus(kind, url)
    yield b
    b.close()


def ev(channel: str, n: int, etype: str = "message.created", key: str | None = None):
    raw = {"channel": channel, "type": etype, "data": {"n": n}}
    if key is not None:
        raw["idempotency_key"] = key
    return draft(raw, 65536)


def sub(channels, max_bytes: int = 1 << 20, name: str = "s") -> Subscriber:
    return Subscriber(f"{name}-{time.monotonic_ns()}", "u", channels, max_bytes)


def collect(s: Subscriber, want: int, timeout: float = 5.0) -> list[tuple[int, bytes]]:
    got: list[tuple[int, bytes]] = []
    deadline = time.monotonic() + timeout
    while len(got) < want and time.monotonic() < deadline:
        got += s.take(0.05)
    return got


def seq_of(cursor: str) -> int:
    return int(cursor.rsplit("-", 1)[1])


def test_cursors_are_one_sequence_across_channels(bus):
    ids = bus.publish([ev("channel:a", 1), ev("channel:b", 2)]) + bus.publish([ev("channel:a", 3)])
    seqs = [seq_of(i) for i in ids]
    assert seqs == sorted(seqs) and len(set(seqs)) == 3
    assert {i.rsplit("-", 1)[0] for i in ids} == {bus.head().epoch}
    assert str(bus.head()) == ids[-1]


def test_live_delivery_in_order_with_encoded_frame(bus):
    s = sub(["channel:a", "channel:b"])
    bus.attach(s, ["channel:a", "channel:b"])
    ids = [bus.publish([ev("channel:a" if n % 2 else "channel:b", n)])[0] for n in range(20)]
    frames = collect(s, 20)
    assert [seq for seq, _ in frames] == [seq_of(i) for i in ids]
    first = frames[0][1].decode()
    assert first.startswith(f"id: {ids[0]}\nevent: message.created\ndata: {{\"id\":\"{ids[0]}\"")
    assert first.endswith("\n\n") and first.count("\n") == 4


def test_a_burst_longer_than_a_read_batch_arrives_whole_and_in_order(bus):
    # Redis: the reader handles what has arrived in batches (RedisBus._handle_arrived); a small batch
    # makes every boundary of this burst fall mid-stream. Runs of one channel alternate.
    if hasattr(bus, "read_batch"):
        bus.read_batch = 7
    s = sub(["channel:a", "channel:b"])
    bus.attach(s, ["channel:a", "channel:b"])
    events = [ev("channel:a" if (n // 3) % 2 else "channel:b", n) for n in range(100)]
    ids = bus.publish(events)  # one call: the whole burst lands in the reader's socket at once
    frames = collect(s, 100)
    assert [seq for seq, _ in frames] == [seq_of(i) for i in ids]


def test_a_burst_of_large_events_arrives_whole(bus):
    # Redis: 1.2 MB in one burst reaches the reader in many TCP segments, so messages are
    # split across reads while the reader takes what has arrived (RedisBus._handle_arrived).
    s = sub(["channel:a"], max_bytes=8 << 20)
    bus.attach(s, ["channel:a"])
    big = "z" * 60_000
    events = [draft({"channel": "channel:a", "type": "message.created", "data": {"n": n, "pad": big}}, 65536) for n in range(20)]
    ids = bus.publish(events)
    frames = collect(s, 20)
    assert [seq for seq, _ in frames] == [seq_of(i) for i in ids]
    assert bus.health() is None  # the feed was not lost on the way


def test_a_publish_over_its_quota_publishes_nothing(bus):
    from chatgenius.bus.base import Quota, QuotaExceeded

    s = sub(["channel:a"])
    bus.attach(s, ["channel:a"])
    key = f"events:user:q-{time.monotonic_ns()}"
    per_minute, per_hour = Quota(key, 5, 60), Quota(key, 2, 3600)
    ids = [bus.publish([ev("channel:a", n)], [per_minute, per_hour])[0] for n in range(2)]
    head = bus.head()
    with pytest.raises(QuotaExceeded) as err:
        bus.publish([ev("channel:a", 2), ev("channel:a", 3)], [per_minute, per_hour])
    assert err.value.quota == per_hour and 1 <= err.value.retry_after <= 3600
    assert bus.head() == head  # nothing stored
    assert [seq for seq, _ in collect(s, 3, timeout=0.5)] == [seq_of(i) for i in ids]  # nothing sent
    other = Quota(key + "-other", 1, 60)  # quotas are per key
    assert bus.publish([ev("channel:a", 4)], [other])[0] is not None
    assert bus.publish([ev("channel:a", 5)])[0] is not None  # and only where asked for


def test_replay_after_cursor_merges_channels_in_order(bus):
    ids = [bus.publish([ev(f"channel:{'ab'[n % 2]}", n)])[0] for n in range(10)]
    bus.publish([ev("channel:other", 99)])
    after = Cursor(bus.head().epoch, seq_of(ids[3]))
    found = bus.replay(["channel:a", "channel:b"], after, 100)
    assert [r.cursor for r in found.events] == ids[4:]
    assert found.reset == []
    assert '"data":{"n":4}' in found.events[0].envelope


def test_no_gap_no_duplicate_when_publishing_during_resume(bus):
    before = [bus.publish([ev("channel:a", n)])[0] for n in range(30)]
    cursor = Cursor(bus.head().epoch, seq_of(before[9]))
    published: list[str] = []

    def publisher() -> None:
        for n in range(30, 130):
            published.extend(i for i in bus.publish([ev("channel:a", n)]) if i)
            if n % 5 == 0:
                gevent.sleep(0)

    s = sub(["channel:a"])
    g = gevent.spawn(publisher)
    gevent.sleep(0)
    bus.attach(s, ["channel:a"])
    found = bus.replay(["channel:a"], cursor, 1000)
    g.join(timeout=10)
    floor = found.events[-1].seq if found.events else cursor.seq
    live = [seq for seq, _ in collect(s, 100, timeout=3)]
    delivered = [r.seq for r in found.events] + [q for q in live if q > floor]
    expected = [seq_of(i) for i in before[10:] + published]
    assert delivered == expected


def test_trimmed_history_is_a_reset_not_a_gap(kind, request):
    url = request.getfixturevalue("redis_url") if kind == "redis" else None
    b = make_bus(kind, url, maxlen=5)
    try:
        ids = [b.publish([ev("channel:a", n)])[0] for n in range(12)]
        b.publish([ev("channel:b", 1)])
        old = Cursor(b.head().epoch, seq_of(ids[2]))
        found = b.replay(["channel:a", "channel:b"], old, 5)
        assert found.reset == ["channel:a"]
        assert [r.cursor for r in found.events if '"channel:b"' in r.envelope]
        recent = Cursor(b.head().epoch, seq_of(ids[7]))
        ok = b.replay(["channel:a"], recent, 5)
        assert ok.reset == [] and [r.cursor for r in ok.events] == ids[8:]
    finally:
        b.close()


def test_cursor_from_another_epoch_or_the_future_resets_and_replays_the_epoch(bus):
    ids = bus.publish([ev("channel:a", 1), ev("channel:b", 2), ev("channel:a", 3)])
    head = bus.head()
    other = bus.replay(["channel:a"], Cursor("zzzzzz", head.seq), 100)
    future = bus.replay(["channel:a"], Cursor(head.epoch, head.seq + 50), 100)
    # Everything in the current epoch comes after a cursor that predates it: reset, then all of it.
    assert other.reset == ["channel:a"] and [r.cursor for r in other.events] == [ids[0], ids[2]]
    assert future.reset == ["channel:a"] and [r.cursor for r in future.events] == [ids[0], ids[2]]


def test_ephemeral_events_are_live_only(bus):
    s = sub(["channel:a"])
    bus.attach(s, ["channel:a"])
    start = bus.head()
    ids = bus.publish([ev("channel:a", 1, "user.typing"), ev("channel:a", 2)])
    assert ids[0] is None and ids[1] is not None
    frames = collect(s, 2)
    assert frames[0][0] == 0 and not frames[0][1].startswith(b"id:")
    assert b"event: user.typing\n" in frames[0][1]
    found = bus.replay(["channel:a"], start, 100)
    assert [r.type for r in found.events] == ["message.created"]


def test_slow_subscriber_is_dropped_with_memory_bounded(bus):
    slow = sub(["channel:a"], max_bytes=4096)
    fast = sub(["channel:a"])
    bus.attach(slow, ["channel:a"])
    bus.attach(fast, ["channel:a"])
    for n in range(60):
        bus.publish([ev("channel:a", n)])
    assert len(collect(fast, 60)) == 60
    assert slow.end_reason == "slow_consumer"
    assert slow.depth == 0 and slow._bytes <= 4096


def test_detach_releases_the_channel(bus):
    s = sub(["channel:a"])
    bus.attach(s, ["channel:a"])
    assert "channel:a" in bus.hub.channels()
    bus.detach(s)
    assert "channel:a" not in bus.hub.channels() and s.id not in bus.hub.subscribers
    bus.publish([ev("channel:a", 1)])
    assert s.take(0.1) == []


def test_batch_gets_consecutive_cursors(bus):
    ids = bus.publish([ev("channel:a", n) for n in range(5)])
    seqs = [seq_of(i) for i in ids]
    assert seqs == list(range(seqs[0], seqs[0] + 5))


# -- exactly once per idempotency key (EventBus.publish_once) ----------------------------------


def live_numbers(s: Subscriber, marker: int) -> list[int]:
    """The `n` of every live frame up to the keyless `marker` event published last (so a late
    duplicate would be seen: the feed is in order)."""
    got: list[int] = []
    deadline = time.monotonic() + 5
    while marker not in got and time.monotonic() < deadline:
        got += [int(f.split(b'"n":')[1].split(b"}")[0]) for _, f in s.take(0.05)]
    assert marker in got, got
    return got


def test_a_repeated_key_answers_the_first_ids_and_publishes_once(bus):
    s = sub(["channel:a"])
    bus.attach(s, ["channel:a"])
    start = bus.head()
    first = bus.publish_once([ev("channel:a", 1), ev("channel:a", 2, "user.typing")], "user:alice", "req-1")
    again = bus.publish_once([ev("channel:a", 1), ev("channel:a", 2, "user.typing")], "user:alice", "req-1")
    assert not first.replayed and first.ids[0] is not None and first.ids[1] is None
    assert again.replayed and again.ids == first.ids
    bus.publish([ev("channel:a", 99)])
    assert live_numbers(s, 99) == [1, 2, 99]
    assert [r.cursor for r in bus.replay(["channel:a"], start, 100).events][:-1] == [first.ids[0]]
    assert bus.head().seq == start.seq + 2


def test_a_key_reused_for_other_content_raises_and_stores_nothing(bus):
    bus.publish_once([ev("channel:a", 1)], "user:alice", "req-1")
    bus.publish_once([ev("channel:a", 2, key="ev-1")], "user:alice")
    head = bus.head()
    with pytest.raises(IdempotencyConflict) as request_conflict:
        bus.publish_once([ev("channel:a", 1), ev("channel:a", 3)], "user:alice", "req-1")
    with pytest.raises(IdempotencyConflict) as event_conflict:
        bus.publish_once([ev("channel:a", 4), ev("channel:b", 2, key="ev-1")], "user:alice")
    assert request_conflict.value.index is None and event_conflict.value.index == 1
    assert bus.head() == head
    assert bus.replay(["channel:a", "channel:b"], head, 100).events == []


def test_event_keys_in_a_batch_skip_seen_events_and_publish_the_rest(bus):
    s = sub(["channel:a"])
    bus.attach(s, ["channel:a"])
    start = bus.head()
    first = bus.publish_once([ev("channel:a", 1, key="e1"), ev("channel:a", 2, key="e2")], "user:alice")
    second = bus.publish_once(
        [ev("channel:a", 3), ev("channel:a", 1, key="e1"), ev("channel:a", 4, "user.typing", key="t1")], "user:alice",
    )
    third = bus.publish_once([ev("channel:a", 4, "user.typing", key="t1"), ev("channel:a", 5, key="e5")], "user:alice")
    assert first.repeats == frozenset() and second.repeats == {1} and third.repeats == {0}
    assert second.ids[1] == first.ids[0] and second.ids[0] not in first.ids and second.ids[2] is None
    assert third.ids[0] is None and not (second.replayed or third.replayed)
    bus.publish([ev("channel:a", 99)])
    assert live_numbers(s, 99) == [1, 2, 3, 4, 5, 99]
    stored = [r.cursor for r in bus.replay(["channel:a"], start, 100).events][:-1]
    assert stored == [*first.ids, second.ids[0], third.ids[1]]


def test_a_retry_of_a_request_that_went_through_is_not_rate_limited(bus):
    quota = Quota("events:user:alice", 1, 60)
    first = bus.publish_once([ev("channel:a", 1)], "user:alice", "req-1", [quota])
    assert bus.publish_once([ev("channel:a", 1)], "user:alice", "req-1", [quota]).ids == first.ids
    with pytest.raises(QuotaExceeded):
        bus.publish_once([ev("channel:a", 1)], "user:alice", "req-2", [quota])


def test_keys_of_different_scopes_never_meet(bus):
    # Length-prefixed scopes: ("a:b", "c") and ("a", "b:c") are different keys.
    ids = [
        bus.publish_once([ev("channel:a", 1)], scope, key).ids[0]
        for scope, key in [("user:alice", "k"), ("user:bob", "k"), ("a:b", "c"), ("a", "b:c"), ("app", "k")]
    ]
    assert None not in ids and len(set(ids)) == 5
    assert bus.publish_once([ev("channel:a", 1)], "user:bob", "k").ids == [ids[1]]


def test_two_racing_duplicates_publish_once(bus):
    s = sub(["channel:a"])
    bus.attach(s, ["channel:a"])
    start = bus.head()
    results = [gevent.spawn(bus.publish_once, [ev("channel:a", 1, key="e1")], "user:alice", "req") for _ in range(8)]
    gevent.joinall(results, timeout=10, raise_error=True)
    answers = [g.value for g in results]
    assert len({tuple(a.ids) for a in answers}) == 1 and sum(not a.replayed for a in answers) == 1
    bus.publish([ev("channel:a", 99)])
    assert live_numbers(s, 99) == [1, 99]
    assert len(bus.replay(["channel:a"], start, 100).events) == 2


def test_a_key_expires_after_the_window(kind, request):
    now = [1000.0]
    url = request.getfixturevalue("redis_url") if kind == "redis" else None
    b = make_bus(kind, url, window=1, clock=lambda: now[0])
    try:
        first = b.publish_once([ev("channel:a", 1, key="e1")], "app", "req").ids
        assert b.publish_once([ev("channel:a", 1, key="e1")], "app", "req").ids == first
        if kind == "memory":
            now[0] += 1.001
        else:  # Redis' own clock: wait until it has dropped both keys
            client = redis.Redis.from_url(url)
            deadline = time.monotonic() + 5
            while client.keys("cg:i:*"):
                assert time.monotonic() < deadline, "idempotency keys did not expire"
                time.sleep(0.05)
        again = b.publish_once([ev("channel:a", 1, key="e1")], "app", "req")
        assert not again.replayed and again.repeats == frozenset() and again.ids != first
    finally:
        b.close()


# -- Redis only: what a lost or wiped Redis does -------------------------------------------


def test_redis_wiped_starts_a_new_epoch(redis_url):
    b = make_bus("redis", redis_url)
    try:
        old = b.publish([ev("channel:a", 1)])[0]
        redis.Redis.from_url(redis_url).flushall()
        new = b.publish([ev("channel:a", 2)])[0]
        assert old.rsplit("-", 1)[0] != new.rsplit("-", 1)[0]
        from chatgenius.cursor import parse

        found = b.replay(["channel:a"], parse(old), 100)
        assert found.reset == ["channel:a"] and [r.cursor for r in found.events] == [new]
    finally:
        b.close()


def test_redis_subscription_count_does_not_grow_with_subscribers(redis_url):
    b = make_bus("redis", redis_url)
    try:
        r = redis.Redis.from_url(redis_url)
        baseline = len(r.client_list())
        subs = [sub(["channel:a", "channel:b"], name=str(i)) for i in range(200)]
        for s in subs:
            b.attach(s, ["channel:a", "channel:b"])
        b.publish([ev("channel:a", 1)])
        assert len(r.client_list()) <= baseline + 1
        assert r.pubsub_numsub("cg:l:channel:a")[0][1] == 1
        for s in subs:
            b.detach(s)
        deadline = time.monotonic() + 3
        while r.pubsub_numsub("cg:l:channel:a")[0][1] != 0:
            assert time.monotonic() < deadline, "upstream subscription was not released"
            gevent.sleep(0.02)
    finally:
        b.close()


def test_redis_unreachable_publish_is_bus_unavailable():
    client, feed = make_clients("redis://127.0.0.1:1/0", (), "")
    b = RedisBus(client, RedisFeed(feed), 10, 10, lambda sub: RECONNECT)
    with pytest.raises(BusUnavailable):
        b.publish([ev("channel:a", 1)])
    assert b.health() is not None


# -- Shared state beside the bus (chatgenius/state): tickets and connection leases, both backends ------


@pytest.fixture
def state(kind, request):
    if kind == "memory":
        yield MemoryState()
        return
    client, _ = make_clients(request.getfixturevalue("redis_url"), (), "")
    yield RedisState(client)
    client.close()
    client.connection_pool.disconnect()  # a pool handed to the client outlives close()


def test_ticket_is_taken_exactly_once(state: SharedState):
    assert state.put_ticket("t1", "alice", 30) is True
    assert state.put_ticket("t1", "mallory", 30) is False  # never overwritten
    assert state.take_ticket("t1") == "alice"
    assert state.take_ticket("t1") is None
    assert state.take_ticket("never-issued") is None


def test_ticket_taken_by_racing_workers_is_taken_once(state: SharedState):
    state.put_ticket("race", "alice", 30)
    takers = [gevent.spawn(state.take_ticket, "race") for _ in range(20)]
    gevent.joinall(takers, timeout=5)
    values = [g.value for g in takers]
    assert values.count("alice") == 1 and values.count(None) == 19


def test_ticket_expires_after_its_ttl(state: SharedState):
    state.put_ticket("short", "alice", 0.3)
    state.put_ticket("probe", "x", 0.3)
    # put_ticket succeeds again only once the probe (stored just after "short") has expired: no blind sleep.
    deadline = time.monotonic() + 5
    while not state.put_ticket("probe", "x", 30):
        assert time.monotonic() < deadline, "ticket never expired"
        gevent.sleep(0.05)
    assert state.take_ticket("short") is None


def test_leases_are_capped_per_owner_and_freed_on_release(state: SharedState):
    assert state.acquire_lease("alice", "c1", 2, 30).granted
    assert state.acquire_lease("alice", "c2", 2, 30).held == 2
    full = state.acquire_lease("alice", "c3", 2, 30)
    assert not full.granted and full.held == 2 and 0 < full.retry_after <= 30
    assert state.acquire_lease("alice", "c1", 2, 30).granted  # re-acquiring a held lease is not a new slot
    assert state.acquire_lease("bob", "c9", 2, 30).granted  # per owner
    state.release_lease("alice", "c1")
    state.release_lease("alice", "c1")  # twice is harmless
    assert state.acquire_lease("alice", "c3", 2, 30).granted


def test_unrefreshed_leases_expire_and_refreshed_ones_do_not(state: SharedState):
    assert state.acquire_lease("alice", "kept", 2, 0.5).granted
    assert state.acquire_lease("alice", "dead", 2, 0.5).granted
    started = time.monotonic()
    while not state.acquire_lease("alice", "new", 2, 0.5).granted:  # "dead" is never refreshed
        assert time.monotonic() - started < 5, "lease never expired"
        state.refresh_leases([("alice", "kept")], 0.5)
        gevent.sleep(0.05)
    assert time.monotonic() - started >= 0.3
    state.refresh_leases([("alice", "kept"), ("alice", "new")], 30)
    assert not state.acquire_lease("alice", "late", 2, 30).granted  # "kept" survived by refreshing


def test_setnx_keeps_the_first_value(state: SharedState):
    assert state.setnx("cg:test:k", "one") == "one"
    assert state.setnx("cg:test:k", "two") == "one"


def test_concurrent_acquires_never_exceed_the_limit(state: SharedState):
    tries = [gevent.spawn(state.acquire_lease, "alice", f"c{i}", 3, 30) for i in range(30)]
    gevent.joinall(tries, timeout=5)
    assert sum(g.value.granted for g in tries) == 3


def test_redis_leases_use_one_clock_and_expire_with_their_key(redis_url):
    client, _ = make_clients(redis_url, (), "")
    try:
        state = RedisState(client)
        state.acquire_lease("auth0|x", "c1", 5, 2)
        ttl_ms = client.pttl("cg:c:{auth0|x}")
        assert 0 < ttl_ms <= 2000  # the set itself goes away with its last lease: nothing leaks
        expiry = client.zscore("cg:c:{auth0|x}", "c1")
        server_ms = client.time()[0] * 1000
        assert abs(expiry - (server_ms + 2000)) < 1500  # scored on Redis' clock, not this host's
    finally:
        client.close()


def test_a_feed_that_reconnects_leaves_no_watcher_of_its_old_connections_started(redis_url):
    """The feed's read keeps its socket's watcher started between waits (readable.py); each lost
    connection closes its read (Replies.close) instead of relying on gevent's close of the socket
    to fire the watcher. Three kills of the feed's connection, three reconnects."""
    b = make_bus("redis", redis_url)
    admin = redis.Redis.from_url(redis_url)
    try:
        for n in range(1, 4):
            host, port = b.feed.pubsub.connection._sock.getsockname()[:2]  # Redis knows the feed by this address
            admin.client_kill_filter(addr=f"{host}:{port}")
            deadline = time.monotonic() + 10
            while b.feed.reconnects < n or b.health() is not None:
                assert time.monotonic() < deadline, "the feed reconnects"
                gevent.sleep(0.02)
        gc.collect()
        started = [o for o in gc.get_objects() if type(o) is FeedReplies and o._readable is not None]
        assert len(started) == 1, "only the live connection's read watches its socket"
    finally:
        admin.close()
        b.close()
