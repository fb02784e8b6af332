"""Zero-loss drain: reload (HUP) and shutdown (TERM) under 50 events/s lose and duplicate nothing.

Clients do what the bundled one does: on `system.reconnect` wait `retry_ms`, then
resume with Last-Event-ID. Ground truth is the channel's history, so a publish
retried by the test's publisher cannot fool the comparison.
"""

from __future__ import annotations

import os
import runpy

import psutil
from gunicorn.workers.ggevent import GeventWorker
from support.procs import REPO_ROOT, wait_until

from chatgenius.drain import spread_for
from chatgenius.gunicorn_worker import PublishWorker

from .helpers import PUBLISHER, Follower, Publisher, Store, head, history_after, host, token

CLIENTS = 8
# A short graceful_timeout keeps the test quick; the spread (a third of it) is still 2 s.
DRAIN_ENV = {"GRACEFUL_TIMEOUT": "6", "RECONNECT_RETRY_MS": "300"}


def opened(server, n: int) -> None:
    wait_until(lambda: sum(r.get("event") == "connection.open" for r in server.json_logs()) >= n, 10, message=f"{n} streams open")


def check_exactly_once(followers: list[Follower], truth: list[str]) -> None:
    for follower in followers:
        follower.finish(truth[-1])
        assert len(follower.ids) == len(set(follower.ids)), "duplicates"
        assert follower.ids == truth, f"missing {sorted(set(truth) - set(follower.ids))[:5]}"
        assert follower.reconnect_at, "each stream was told to reconnect"
        assert follower.unexpected_ends == 0, "streams end with a frame, never silently"
    firsts = sorted(f.reconnect_at[0] for f in followers)
    assert firsts[-1] - firsts[0] > 0.3, "reconnects are spread, not all at once"


def test_gunicorn_graceful_timeout_outlasts_the_drain(monkeypatch, tmp_path):
    # The config file writes to os.environ (BIND, metrics dir): give it a copy.
    env = {k: v for k, v in os.environ.items() if k != "GRACEFUL_TIMEOUT"}
    monkeypatch.setattr(os, "environ", {**env, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)})
    conf = runpy.run_path(str(REPO_ROOT / "gunicorn.conf.py"))
    assert conf["graceful_timeout"] >= spread_for(conf["graceful_timeout"]) + 5
    assert conf["worker_class"] == "chatgenius.gunicorn_worker.PublishWorker" and "post_worker_init" in conf
    assert issubclass(PublishWorker, GeventWorker)  # the drain rides gunicorn's gevent worker


def test_reload_under_50_events_per_second_loses_and_duplicates_nothing(store: Store):
    chan = store.channel("channel:drain")
    with host(store, **DRAIN_ENV) as g:
        pub = token(g.base_url, "dr-pub", permissions=PUBLISHER)
        alice = token(g.base_url, "dr-alice")
        start = head(g.base_url, alice, chan)
        followers = [Follower(lambda: g.base_url, alice, chan, start).start() for _ in range(CLIENTS)]
        publisher = Publisher(lambda: g.base_url, pub, chan, rate=50).start()
        try:
            opened(g, CLIENTS)
            wait_until(lambda: len(publisher.ids) >= 50, 20)
            # Handles taken before the HUP: a worker holding no stream may exit
            # before hup() returns, and would be gone by the time we looked it up.
            procs = [psutil.Process(pid) for pid in g.worker_pids()]
            old = g.hup()  # returns once the new workers exist; the old ones drain
            assert {p.pid for p in procs} == old
            _, alive = psutil.wait_procs(procs, timeout=float(DRAIN_ENV["GRACEFUL_TIMEOUT"]) + 2)
            assert not alive, "old workers exit within graceful_timeout"
            count = len(publisher.ids)
            wait_until(lambda: len(publisher.ids) >= count + 50, 20)  # publishing goes on meanwhile
        finally:
            ids = publisher.stop()
        truth = history_after(g.base_url, alice, chan, start)
        assert truth[-1] == ids[-1]
        check_exactly_once(followers, truth)
        drains = [r for r in g.json_logs() if r.get("event") == "worker.drain"]
        # A worker holding no stream may exit before its drain greenlet wakes: no line from it then.
        assert {r["pid"] for r in drains} <= set(old) and sum(r["streams"] for r in drains) >= CLIENTS
        assert {r["cause"] for r in drains} == {"SIGTERM"}, "the reload's SIGTERM starts the drain, not the poll"
        assert not [line for line in g.log_lines() if "graceful timeout" in line.lower()]


def test_shutdown_under_50_events_per_second_loses_and_duplicates_nothing(store: Store):
    chan = store.channel("channel:drain")
    a, b = host(store, **DRAIN_ENV), host(store, **DRAIN_ENV)
    with a, b:
        pub = token(b.base_url, "dr-pub", permissions=PUBLISHER)
        alice = token(a.base_url, "dr-alice")
        start = head(a.base_url, alice, chan)
        route = {"to": a.base_url}  # the load balancer
        followers = [Follower(lambda: route["to"], alice, chan, start).start() for _ in range(CLIENTS)]
        publisher = Publisher(lambda: b.base_url, pub, chan, rate=50).start()
        try:
            opened(a, CLIENTS)
            wait_until(lambda: len(publisher.ids) >= 50, 20)
            route["to"] = b.base_url  # A leaves the rotation, then is stopped
            a.term()
            wait_until(lambda: a.returncode is not None, float(DRAIN_ENV["GRACEFUL_TIMEOUT"]) + 3, 0.1, "A's master exits")
            assert a.returncode == 0
            count = len(publisher.ids)
            wait_until(lambda: len(publisher.ids) >= count + 50, 20)
        finally:
            ids = publisher.stop()
        truth = history_after(b.base_url, alice, chan, start)
        assert truth[-1] == ids[-1]
        check_exactly_once(followers, truth)
        drains = [r for r in a.json_logs() if r.get("event") == "worker.drain"]
        assert drains and {r["cause"] for r in drains} == {"SIGTERM"}
        assert not [line for line in a.log_lines() if "graceful timeout" in line.lower()]
