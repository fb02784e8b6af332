"""ConnectionLeases (the per-user stream cap of one process) on the in-memory state, with a clock the test moves.

The state's own lease rules are the contract suite's (tests/bus/test_contract.py);
this is the process side: what is held locally (what a refresh extends and counts),
what a release gives back, and that a state outage on release is survived.
"""

from __future__ import annotations

import logging

import gevent
import pytest

from chatgenius.bus.base import BusUnavailable
from chatgenius.leases import ConnectionLeases
from chatgenius.state.memory import MemoryState


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def leases(clock: Clock):
    made = ConnectionLeases(MemoryState(clock), limit=2, ttl=30)
    yield made
    made.close()


def test_the_limit_holds_and_a_release_frees_a_slot(leases: ConnectionLeases):
    assert leases.acquire("alice", "c1").granted and leases.acquire("alice", "c2").granted
    full = leases.acquire("alice", "c3")
    assert not full.granted and full.held == 2 and 0 < full.retry_after <= 30
    assert leases.refresh() == 2  # a refused lease is not held
    assert leases.acquire("bob", "c9").granted  # per owner
    leases.release("alice", "c1")
    assert leases.refresh() == 2  # alice's c2 and bob's c9
    assert leases.acquire("alice", "c3").granted


def test_releasing_what_is_not_held_here_does_not_touch_the_state(leases: ConnectionLeases):
    assert leases.acquire("alice", "c1").granted
    leases.release("alice", "c-unknown")
    assert leases.refresh() == 1
    assert leases.acquire("alice", "c2").granted
    assert not leases.acquire("alice", "c3").granted  # c1 is still taken
    leases.release("alice", "c1")
    leases.release("alice", "c1")  # twice: the second is a no-op
    assert leases.refresh() == 1 and leases.acquire("alice", "c3").granted


def test_refresh_extends_every_local_lease_and_unrefreshed_ones_expire(clock: Clock, leases: ConnectionLeases):
    assert leases.acquire("alice", "c1").granted and leases.acquire("alice", "c2").granted
    clock.now += 20
    assert leases.refresh() == 2
    clock.now += 20  # 40 s after acquiring, 20 after the refresh: still held
    assert not leases.acquire("alice", "c3").granted
    clock.now += 11  # 31 s after the refresh: expired
    assert leases.acquire("alice", "c3").granted


def test_refresh_with_nothing_held_makes_no_round_trip(clock: Clock):
    class Counting(MemoryState):
        calls = 0

        def refresh_leases(self, leases, ttl):  # noqa: ANN001 - the SharedState signature
            Counting.calls += 1
            super().refresh_leases(leases, ttl)

    leases = ConnectionLeases(Counting(clock), limit=2, ttl=30)
    assert leases.refresh() == 0 and Counting.calls == 0
    leases.acquire("alice", "c1")
    assert leases.refresh() == 1 and Counting.calls == 1
    leases.close()


def test_a_release_while_the_state_is_down_is_logged_not_raised(clock: Clock, caplog: pytest.LogCaptureFixture):
    class Down(MemoryState):
        def release_lease(self, owner, lease):  # noqa: ANN001
            raise BusUnavailable("redis unavailable")

    leases = ConnectionLeases(Down(clock), limit=2, ttl=30)
    assert leases.acquire("alice", "c1").granted
    with caplog.at_level(logging.WARNING, logger="chatgenius"):
        leases.release("alice", "c1")  # must not raise: the lease expires within the TTL by itself
    assert leases.refresh() == 0
    [record] = [r for r in caplog.records if getattr(r, "event", None) == "lease.release_failed"]
    assert record.levelno == logging.WARNING
    assert (record.user_id, record.connection_id, record.error) == ("alice", "c1", "redis unavailable")
    leases.close()


def test_a_failed_refresh_is_logged_and_the_refresher_keeps_going(clock: Clock, caplog: pytest.LogCaptureFixture):
    class Flaky(MemoryState):
        fails = 1

        def refresh_leases(self, leases, ttl):  # noqa: ANN001
            if Flaky.fails:
                Flaky.fails -= 1
                raise BusUnavailable("redis unavailable")
            super().refresh_leases(leases, ttl)

    leases = ConnectionLeases(Flaky(clock), limit=1, ttl=0.15)
    with caplog.at_level(logging.WARNING, logger="chatgenius"):
        assert leases.acquire("alice", "c1").granted
        gevent.sleep(0.2)  # four refresh periods: the first fails, the next ones succeed
    leases.close()
    failed = [r for r in caplog.records if getattr(r, "event", None) == "lease.refresh_failed"]
    assert len(failed) == 1 and failed[0].leases == 1 and "redis unavailable" in failed[0].error
    assert Flaky.fails == 0


def test_the_refresher_runs_every_third_of_the_ttl(clock: Clock):
    state = MemoryState(clock)
    refreshed: list[int] = []
    real = state.refresh_leases
    state.refresh_leases = lambda held, ttl: refreshed.append(len(held)) or real(held, ttl)  # type: ignore[method-assign]
    leases = ConnectionLeases(state, limit=1, ttl=0.3)
    assert leases.acquire("alice", "c1").granted
    gevent.sleep(0.35)  # three refresh periods of 0.1 s
    leases.close()
    assert len(refreshed) >= 2 and all(n == 1 for n in refreshed), refreshed
    count = len(refreshed)
    gevent.sleep(0.25)
    assert len(refreshed) == count, "close() stops the refresher"
