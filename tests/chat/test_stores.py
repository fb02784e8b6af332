"""The contract suites of PresenceStore and ControlStore, run against memory and a real Redis."""

from __future__ import annotations

import json
import time

import gevent
import pytest

from chatgenius.bus.memory import MemoryBus
from chatgenius.bus.redis import RedisBus, make_clients
from chatgenius.bus.redis_feed import RedisFeed
from chatgenius.control.memory import MemoryControl
from chatgenius.control.redis import RedisControl
from chatgenius.presence.base import Lease, presence_draft
from chatgenius.presence.memory import MemoryPresence
from chatgenius.presence.redis import RedisPresence
from chatgenius.presence.service import Presence
from chatgenius.subscriber import Subscriber

CH = "channel:p"
GRACE = 0.3


@pytest.fixture(params=["memory", "redis"])
def bus(request):
    if request.param == "memory":
        b = MemoryBus(100, 3600)
    else:
        client, feed = make_clients(request.getfixturevalue("redis_url"), (), "")
        b = RedisBus(client, RedisFeed(feed, ping_interval=0.5), 100, 3600, lambda sub: None)
        b.start()
        deadline = time.monotonic() + 5
        while b.health() is not None:
            assert time.monotonic() < deadline
            gevent.sleep(0.02)
    yield b
    b.close()


@pytest.fixture
def store(bus):
    return MemoryPresence(bus) if isinstance(bus, MemoryBus) else RedisPresence(bus)


@pytest.fixture
def control(bus):
    return MemoryControl() if isinstance(bus, MemoryBus) else RedisControl(bus.client, bus.feed)


@pytest.fixture
def watch(bus):
    """The presence events published on CH, as (user, status), in order."""
    sub = Subscriber("w", "w", [CH], 1 << 20)
    bus.attach(sub, [CH])

    def events(wait: float = 0.2) -> list[tuple[str, str]]:
        """Everything that arrives until `wait` s pass without a frame."""
        out = []
        while frames := sub.take(wait):
            for seq, frame in frames:
                assert seq > 0, "presence events are durable"
                data = json.loads(frame.split(b"data: ", 1)[1])["data"]
                out.append((data["user_id"], data["status"]))
        return out

    return events


def test_first_lease_announces_online_once(store, watch):
    assert store.join([Lease(CH, "u1", "c1")], 5, presence_draft) == [True]
    assert store.join([Lease(CH, "u1", "c2"), Lease(CH, "u2", "c3")], 5, presence_draft) == [False, True]
    assert watch() == [("u1", "online"), ("u2", "online")]
    assert store.online(CH) == ["u1", "u2"]
    assert store.online("channel:other") == []


def test_offline_after_the_grace_once_the_last_lease_is_gone(store, watch):
    store.join([Lease(CH, "u1", "c1"), Lease(CH, "u1", "c2")], 5, presence_draft)
    store.leave([Lease(CH, "u1", "c1")], GRACE)
    gevent.sleep(GRACE + 0.1)
    assert store.sweep(GRACE, presence_draft) == []  # c2 is still open
    store.leave([Lease(CH, "u1", "c2")], GRACE)
    assert store.sweep(GRACE, presence_draft) == []  # the grace has not passed
    gevent.sleep(GRACE + 0.1)
    assert store.sweep(GRACE, presence_draft) == [(CH, "u1")]
    assert store.sweep(GRACE, presence_draft) == []
    assert watch() == [("u1", "online"), ("u1", "offline")]
    assert store.online(CH) == []


def test_a_join_within_the_grace_cancels_the_offline(store, watch):
    store.join([Lease(CH, "u1", "c1")], 5, presence_draft)
    store.leave([Lease(CH, "u1", "c1")], GRACE)
    assert store.join([Lease(CH, "u1", "c9")], 5, presence_draft) == [False]
    gevent.sleep(GRACE + 0.1)
    assert store.sweep(GRACE, presence_draft) == []
    assert watch() == [("u1", "online")]
    assert store.online(CH) == ["u1"]


def test_a_lapsed_lease_goes_offline_after_ttl_plus_grace(store, watch):
    store.join([Lease(CH, "u1", "c1")], 0.3, presence_draft)
    store.join([Lease(CH, "u2", "c2")], 0.3, presence_draft)
    gevent.sleep(0.2)
    assert store.refresh([Lease(CH, "u2", "c2")], 5) == []  # u2's process is alive
    gevent.sleep(0.15)
    assert store.sweep(GRACE, presence_draft) == []  # u1 lapsed: due after the grace
    gevent.sleep(GRACE + 0.05)
    assert store.sweep(GRACE, presence_draft) == [(CH, "u1")]
    assert watch() == [("u1", "online"), ("u2", "online"), ("u1", "offline")]
    # A lease swept while its stream still ran (a long blip) is reported, to be joined again.
    assert store.refresh([Lease(CH, "u1", "c1"), Lease(CH, "u2", "c2")], 5) == [Lease(CH, "u1", "c1")]


def test_racing_sweepers_announce_once(store, watch):
    store.join([Lease(CH, f"u{i}", f"c{i}") for i in range(20)], 5, presence_draft)
    store.leave([Lease(CH, f"u{i}", f"c{i}") for i in range(20)], 0.05)
    gevent.sleep(0.1)
    results = gevent.joinall([gevent.spawn(store.sweep, 0.05, presence_draft) for _ in range(4)], raise_error=True)
    announced = [pair for g in results for pair in g.value]
    assert sorted(announced) == sorted((CH, f"u{i}") for i in range(20))
    assert len([e for e in watch() if e[1] == "offline"]) == 20


def test_presence_tracker_refreshes_and_rejoins(store, watch):
    presence = Presence(store, ttl=0.6, grace=GRACE)
    presence.start()
    try:
        presence.joined("c1", "u1", [CH, "channel:q"])
        assert watch() == [("u1", "online")]
        gevent.sleep(1.2)  # two TTLs: only the refresher keeps the leases
        presence.sweep()
        assert watch(0.3) == [] and store.online(CH) == ["u1"]
        presence.left("c1", ["channel:q"])
        presence.left("c1")
        gevent.sleep(GRACE + 1.2)  # the sweeper greenlet announces it
        assert watch() == [("u1", "offline")]
        assert presence.leases() == []
    finally:
        presence.close()


def test_control_mailbox_throttle_and_flags(control):
    box = f"cg:r:test-{time.monotonic_ns()}"
    gevent.spawn_later(0.05, control.reply, box, "one", 5)
    gevent.spawn_later(0.1, control.reply, box, "two", 5)
    assert control.receive(box, 2) == "one"
    assert control.receive(box, 2) == "two"
    started = time.monotonic()
    assert control.receive(box, 0.2) is None
    assert 0.15 < time.monotonic() - started < 1.5
    control.discard(box)

    assert control.first_within("u\0channel:a", 0.3) is True
    assert control.first_within("u\0channel:a", 0.3) is False
    assert control.first_within("u\0channel:b", 0.3) is True
    gevent.sleep(0.35)
    assert control.first_within("u\0channel:a", 0.3) is True

    assert control.flags() == {}
    control.set_flags({"ENABLE_SSE": False, "ENABLE_COMPRESSION": True})
    assert control.flags() == {"ENABLE_SSE": False, "ENABLE_COMPRESSION": True}
    control.set_flags({"ENABLE_SSE": None})
    assert control.flags() == {"ENABLE_COMPRESSION": True}


def test_the_control_channel_reaches_every_process_this_one_included(control):
    got: list[bytes] = []
    control.on_control = got.append
    deadline = time.monotonic() + 5
    while control.publish_control(b'{"op":"ping"}') < 1:  # Redis: until the feed has subscribed the channel
        assert time.monotonic() < deadline, "the control channel was never subscribed"
        gevent.sleep(0.02)
    while not got:
        assert time.monotonic() < deadline, "the message did not come back"
        gevent.sleep(0.01)
    assert set(got) == {b'{"op":"ping"}'}
