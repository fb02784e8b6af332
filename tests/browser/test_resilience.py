"""The client in a real browser keeps every event, once and in order, through what production does to it:
a server restart, streaming switched off (at start and at run time) and back on, and token expiry."""

from __future__ import annotations

import time
from urllib.parse import urlsplit

import pytest
from support.procs import wait_until

from .chat import ChatPage, assert_exactly_once_in_order, ids, numbered

pytestmark = pytest.mark.browser



def is_stream(url: str) -> bool:
    return urlsplit(url).path == "/stream"


def after(statuses: list[str], *sequence: str) -> bool:
    """True if `sequence` occurs in order (not necessarily adjacent) in `statuses`."""
    rest = iter(statuses)
    return all(any(s == wanted for s in rest) for wanted in sequence)


def test_server_restart_shows_reconnecting_then_open_and_delivers_everything_once(deploy, new_context) -> None:
    deployment = deploy()
    alice = ChatPage.open(new_context(), deployment.base_url, "alice", backoffCap=2000)
    alice.wait_status("open", "sse")
    published = numbered(deployment, "before", 5)
    alice.wait_messages(5)

    deployment.stop()  # SIGTERM: the workers drain (system.reconnect), then the port closes
    down_since = time.monotonic()
    alice.wait_status("reconnecting")
    alice.wait("() => window.chatDemo.rt.lastError?.kind === 'network'")  # it tried while we were down
    time.sleep(max(0.0, 2.0 - (time.monotonic() - down_since)))  # the outage itself: at least 2 s
    assert alice.status == "reconnecting"

    # Hold the page off the new server until the backlog exists, so it must come from replay
    # (without this the client's next attempt races the publishes; both paths are covered then).
    alice.page.route(is_stream, lambda route: route.abort())
    deployment.start()  # same port, same env, same Redis
    published += numbered(deployment, "meanwhile", 5)
    alice.page.unroute(is_stream)
    alice.wait_status("open", "sse")
    published += numbered(deployment, "live", 3)
    got = alice.wait_messages(13)
    assert_exactly_once_in_order(ids(got), published, alice.wire_ids())
    assert after(alice.statuses(), "open", "reconnecting", "open"), alice.statuses()
    opened = [r for r in deployment.generations[-1].json_logs() if r.get("event") == "connection.open" and r.get("user_id") == "alice"]
    assert len(opened) == 1 and opened[0]["resumed"] is True and opened[0]["replayed"] >= 5, opened
    assert alice.errors == []


def test_sse_disabled_at_start_polls_and_returns_to_sse_when_enabled(deploy, new_context) -> None:
    deployment = deploy(ENABLE_SSE="false")
    alice = ChatPage.open(new_context(), deployment.base_url, "alice", recheck=1000, backoffCap=2000)
    alice.wait_status("polling", "poll")
    alice.wait_cursor()  # the first poll (no cursor) has answered with the newest position
    published = numbered(deployment, "polled", 4)
    assert_exactly_once_in_order(ids(alice.wait_messages(4)), published, alice.wire_ids())
    assert deployment.log_events("connection.open", "alice") == []  # never streamed

    # The operator turns streaming on (a restart with the flag; see the next test for run time):
    # the client notices on its next /client-config recheck and resumes on SSE from the same cursor.
    deployment.stop()
    deployment.start(ENABLE_SSE="true")
    published += numbered(deployment, "streamed", 4)
    alice.wait_status("open", "sse")
    got = alice.wait_messages(8)
    assert_exactly_once_in_order(ids(got), published, alice.wire_ids())
    assert after(alice.statuses(), "polling", "open"), alice.statuses()


def test_sse_flag_flipped_at_run_time_falls_back_to_polling_and_back_without_loss(deploy, new_context) -> None:
    deployment = deploy()
    alice = ChatPage.open(new_context(), deployment.base_url, "alice", recheck=1000, backoffCap=2000)
    alice.wait_status("open", "sse")
    published = numbered(deployment, "sse", 3)
    alice.wait_messages(3)

    status, body = deployment.admin("PUT", "/admin/flags", {"ENABLE_SSE": False})
    if status in (404, 405):
        pytest.fail(
            f"PUT /admin/flags answered {status}: the runtime flag endpoint (docs/API.md, Endpoints) is missing. "
            "This test must run, not skip: it proves the client's system.fallback -> polling -> SSE path."
        )
    assert status == 200, body
    published += numbered(deployment, "switching-off", 3)  # while streams are being told to fall back
    alice.wait_status("polling", "poll")
    published += numbered(deployment, "polled", 3)
    alice.wait_messages(len(published))

    status, body = deployment.admin("PUT", "/admin/flags", {"ENABLE_SSE": True})
    assert status == 200, body
    published += numbered(deployment, "switching-on", 3)
    alice.wait_status("open", "sse")
    published += numbered(deployment, "streamed", 3)
    got = alice.wait_messages(len(published))
    assert_exactly_once_in_order(ids(got), published, alice.wire_ids())
    assert after(alice.statuses(), "open", "polling", "open"), alice.statuses()


def test_token_refresh_before_expiry_is_seamless(deploy, new_context) -> None:
    deployment = deploy()
    alice = ChatPage.open(new_context(), deployment.base_url, "alice", ttl=8)
    alice.wait_status("open", "sse")

    def reauths() -> int:
        return alice.page.evaluate("() => window.chatDemo.tokenMints.filter((r) => r === 'reauth').length")

    # Publish steadily across two token lifetimes: the server ends each stream with system.reauth
    # before exp, the client reconnects at once with a freshly minted token and its cursor.
    published: list[str] = []
    deadline = time.monotonic() + 25
    while reauths() < 2:
        assert time.monotonic() < deadline, f"no second system.reauth in 25 s; statuses {alice.statuses()}"
        published += numbered(deployment, f"tick{len(published)}", 1)
        time.sleep(0.2)
    published += numbered(deployment, "last", 3)
    alice.wait_status("open", "sse")
    got = alice.wait_messages(len(published))
    assert_exactly_once_in_order(ids(got), published, alice.wire_ids())

    history = alice.page.evaluate("() => window.chatDemo.statuses")
    assert "error" not in [s["status"] for s in history]
    gaps = [b["at"] - a["at"] for a, b in zip(history, history[1:]) if a["status"] == "reconnecting" and b["status"] == "open"]
    assert len(gaps) >= 2 and max(gaps) < 2000, f"reconnects took {gaps} ms"
    wait_until(lambda: len([c for c in deployment.log_events("connection.close", "alice") if c.get("reason") == "token_expiring"]) >= 2, 5)
    assert alice.errors == []
