"""The periodic jobs' shared grid (background.py): jobs of one process wake it together."""

from __future__ import annotations

import math
import os
import socket

import gevent
import pytest
from gevent.hub import get_hub

from chatgenius import background
from chatgenius.background import Every, until_next


@pytest.mark.parametrize("interval", [0.2, 1.0, 20.0])
@pytest.mark.parametrize("phase", [0.0, 0.37, 0.999])
@pytest.mark.parametrize("now", [0.0, 5.0, 1796575895.4934115, 1796575895.999999])
def test_the_next_round_is_on_the_grid_and_never_a_hair_away(interval, phase, now):
    wait = until_next(interval, now, phase)
    assert interval / 100 <= wait <= interval * 1.01 + 1e-9
    k = (now + wait - phase) / interval
    assert math.isclose(k, round(k), abs_tol=1e-6), "lands on phase + k * interval"


def test_a_timer_that_fired_a_hair_early_waits_a_whole_round():
    interval, phase = 1.0, 0.25
    on_grid = 1000.25
    assert until_next(interval, on_grid, phase) == pytest.approx(1.0)
    assert until_next(interval, on_grid - 1e-9, phase) == pytest.approx(1.0, abs=1e-6)
    assert until_next(interval, on_grid + 0.5, phase) == pytest.approx(0.5)


def test_processes_get_different_phases():
    phases = [background.phase_of(host, pid) for host, pid in [("a", 4000), ("a", 4001), ("a", 4002), ("b", 4000), ("c", 4000)]]
    assert all(0 <= p < 1 for p in phases)
    assert len({round(p, 6) for p in phases}) == len(phases), "same pid on other hosts included"


def test_a_forked_child_works_out_its_own_phase():
    assert background._phase.value == background.phase_of(socket.gethostname(), os.getpid())
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its phase and leave without running pytest's teardown
        os.write(write, repr(background._phase.value).encode())
        os._exit(0)
    os.close(write)
    child = float(os.read(read, 64))
    os.close(read)
    os.waitpid(pid, 0)
    assert child == background.phase_of(socket.gethostname(), pid) != background._phase.value


@pytest.mark.parametrize("interval", [0, -1.0])
def test_a_job_needs_a_positive_interval(interval):
    with pytest.raises(ValueError, match="above 0"):
        Every(interval, lambda: None, print)


def test_jobs_started_apart_run_in_the_same_turn_of_the_loop():
    """Two jobs of 0.1 s and one of 0.2 s, started at different moments, wake the loop together:
    each round reads the same loop time (libev's, set once per turn)."""
    loop = get_hub().loop
    seen: dict[str, list[float]] = {"a": [], "b": [], "c": []}
    jobs = []
    try:
        jobs.append(Every(0.1, lambda: seen["a"].append(loop.now()), print).start())
        gevent.sleep(0.033)
        jobs.append(Every(0.1, lambda: seen["b"].append(loop.now()), print).start())
        gevent.sleep(0.051)
        jobs.append(Every(0.2, lambda: seen["c"].append(loop.now()), print).start())
        gevent.sleep(1.0)
        cutoff = loop.now()  # this turn's time: a job due in it may or may not have run yet
    finally:
        for job in jobs:
            job.stop()
    a, b, c = ({t for t in seen[k] if t < cutoff} for k in "abc")
    assert len(b) >= 5 and len(c) >= 2
    assert b <= a, "the second 0.1 s job ran only in turns the first also ran in"
    assert c <= a, "the 0.2 s job ran only on turns of the 0.1 s grid"
