"""The Redis bus reader batches by backlog, not by a clock (bus/redis_feed.py, RedisFeed._serve).

An event goes out as soon as the reader reads it, even right after a large
fan-out; events that arrive while a fan-out's writes run are read next and go
out as one run. FANOUT_WINDOW_MS, the fixed window this replaced, is still
accepted (deployments set it) but does nothing and is warned about.
"""

from __future__ import annotations

import gevent
import pytest
from support.procs import wait_until

from chatgenius import config
from chatgenius.backends import redis_family
from chatgenius.bus.redis_feed import BUSY_FANOUT
from chatgenius.events import draft
from chatgenius.subscriber import Subscriber

CHAN = "channel:big"


def ev(n: int):
    return draft({"channel": CHAN, "type": "message.created", "data": {"n": n}}, 65536)


@pytest.fixture
def big(redis_url):
    """A Redis bus built from settings that still say FANOUT_WINDOW_MS=1000, with a large channel."""
    settings = config.load({"AUTH_MODE": "dev", "REDIS_URL": redis_url, "FANOUT_WINDOW_MS": "1000"})
    bus = redis_family(settings).bus
    bus.start()
    wait_until(lambda: bus.health() is None, 5, message="the bus reader connected")
    subs = [Subscriber(f"s{i}", "u", [CHAN], 1 << 20) for i in range(BUSY_FANOUT + 6)]
    for s in subs:
        bus.attach(s, [CHAN])
    yield bus, subs
    bus.close()


def everyone_has(subs: list[Subscriber], got: dict[str, list[int]], n: int) -> bool:
    """Take what each subscriber has queued into `got` (seqs); True once each has `n` events."""
    for s in subs:
        got.setdefault(s.id, []).extend(seq for seq, _ in s.take(0))
    return all(len(got[s.id]) >= n for s in subs)


def test_an_event_right_after_a_large_fan_out_is_not_held(big):
    bus, subs = big
    got: dict[str, list[int]] = {}
    first = int(bus.publish([ev(0)])[0].rsplit("-", 1)[1])
    wait_until(lambda: everyone_has(subs, got, 1), 10, message="the first event reached every stream")
    second = int(bus.publish([ev(1)])[0].rsplit("-", 1)[1])
    # With the old window (here 1000 ms) this event waited for the window's end after a fan-out to
    # BUSY_FANOUT streams; without it, it goes out as soon as it is read.
    wait_until(lambda: everyone_has(subs, got, 2), 0.5, message="the second event went out without waiting for a window")
    assert all(v == [first, second] for v in got.values())


def test_events_arriving_during_a_fan_out_go_out_together_next(big):
    bus, subs = big
    runs: list[int] = []
    dispatch_run = bus.hub.dispatch_run

    def recording(channel, frames):
        runs.append(len(frames))
        return dispatch_run(channel, frames)

    bus.hub.dispatch_run = recording  # type: ignore[method-assign]  # a recording pass-through

    def during_fan_out(frame, subscribers, written):
        bus.hub.on_dispatch = None
        bus.publish([ev(1), ev(2)])  # arrive while this fan-out is still being written...
        gevent.sleep(0.05)  # ...which takes a while (the reader holds the turn: nothing else reads)

    bus.hub.on_dispatch = during_fan_out
    bus.publish([ev(0)])
    got: dict[str, list[int]] = {}
    wait_until(lambda: everyone_has(subs, got, 3), 5, message="all three events reached every stream")
    assert runs == [1, 2], "the two that arrived during the first fan-out went out as one run"
    assert all(len(v) == 3 and v == sorted(v) for v in got.values())


def test_fanout_window_ms_is_accepted_deprecated_and_warned_about():
    settings = config.load({"AUTH_MODE": "dev", "FANOUT_WINDOW_MS": "30"})
    assert any("FANOUT_WINDOW_MS=30 is deprecated and ignored" in w for w in config.exposure_warnings(settings))
    assert not any("FANOUT_WINDOW_MS" in w for w in config.exposure_warnings(config.load({"AUTH_MODE": "dev"})))
    with pytest.raises(config.ConfigError):
        config.load({"AUTH_MODE": "dev", "FANOUT_WINDOW_MS": "fast"})
