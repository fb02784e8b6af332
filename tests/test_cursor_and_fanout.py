"""Cursors parse strictly; the hub hands one frame to every local subscriber and bounds each queue."""

from __future__ import annotations

import time

import gevent
import pytest

from chatgenius.cursor import Cursor, CursorError, new_epoch, parse
from chatgenius.fanout import Hub
from chatgenius.subscriber import Subscriber, Wake


def test_cursor_round_trip_and_strictness():
    epoch = new_epoch()
    assert parse(f"{epoch}-42") == Cursor(epoch, 42)
    assert str(Cursor(epoch, 42)) == f"{epoch}-42"
    for bad in ["", "42", "abc", "ABCD-1", "abcd--1", "abcd-1x", "abcd-1\n", "a-1", "abcd-" + "9" * 19]:
        with pytest.raises(CursorError):
            parse(bad)


def test_hub_shares_one_frame_object_with_every_subscriber():
    hub = Hub()
    subs = [Subscriber(str(i), "u", [], 1 << 20) for i in range(3)]
    for s in subs:
        hub.add(s, ["channel:a"])
    frame = b"id: e-1\nevent: message.created\ndata: {}\n\n"
    assert hub.dispatch("channel:a", 1, frame) == 3
    assert hub.dispatch("channel:b", 2, frame) == 0
    taken = [s.take(0) for s in subs]
    assert all(t == [(1, frame)] and t[0][1] is frame for t in taken)


def test_full_queue_ends_the_subscriber_and_frees_the_frames():
    hub = Hub()
    s = Subscriber("s", "u", [], 100)
    hub.add(s, ["channel:a"])
    for i in range(5):
        hub.dispatch("channel:a", i + 1, b"x" * 30)
    assert s.end_reason == "slow_consumer" and s.depth == 0
    hub.dispatch("channel:a", 9, b"x")
    assert s.depth == 0


def test_first_and_last_subscriber_drive_upstream_subscriptions():
    calls: list[tuple[str, list[str]]] = []
    hub = Hub(on_first=lambda ch: calls.append(("sub", ch)), on_last=lambda ch: calls.append(("unsub", ch)))
    a, b = Subscriber("a", "u", [], 1000), Subscriber("b", "u", [], 1000)
    hub.add(a, ["channel:x", "channel:y"])
    hub.add(b, ["channel:x"])
    hub.remove(a)
    hub.remove(b)
    assert calls == [("sub", ["channel:x", "channel:y"]), ("unsub", ["channel:y"]), ("unsub", ["channel:x"])]
    assert hub.subscribers == {}


def test_wake_returns_when_set_from_another_greenlet_and_after_its_timeout():
    wake = Wake()
    gevent.spawn_later(0.05, wake.set)
    t0 = time.monotonic()
    wake.wait()
    assert 0.04 <= time.monotonic() - t0 < 1.0
    wake.wait()  # still set: returns at once
    wake.clear()
    t0 = time.monotonic()
    wake.wait(0.05)  # nobody sets it: the timeout ends the wait
    assert 0.04 <= time.monotonic() - t0 < 1.0
    assert wake._waiter is None


def test_a_set_after_a_wait_ended_does_not_leak_into_a_later_wait():
    wake = Wake()
    waiter = gevent.spawn(wake.wait, 0.01)  # times out...
    gevent.sleep(0)
    wake.set()  # ...with this switch still scheduled for it
    waiter.join(1)
    wake.clear()
    waited = gevent.spawn(wake.wait)
    gevent.sleep(0.05)
    assert not waited.dead  # the stale switch did not end the new wait
    wake.set()
    waited.join(1)
    assert waited.dead


def test_run_of_events_goes_as_one_entry_per_plain_stream_and_counts_each_event():
    hub = Hub()
    sub = Subscriber("1", "u", [], 1 << 20)
    hub.add(sub, ["channel:a"])
    seen = []
    hub.on_dispatch = lambda frame, subs, written: seen.append((frame, subs, written))
    frames = [(i, b"data: %d\n\n" % i) for i in range(1, 4)]
    assert hub.dispatch_run("channel:a", frames) == 1
    # No wire: the frames queue one by one for the stream's loop, which filters and counts them.
    assert sub.take(0) == frames
    assert [s for _, s, _ in seen] == [1, 1, 1] and all(w == 0 for *_, w in seen)
