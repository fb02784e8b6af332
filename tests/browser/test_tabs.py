"""Tabs of one browser share one stream (Web Locks + BroadcastChannel), and hand it over when the leader closes."""

from __future__ import annotations

import pytest
from support.procs import wait_until

from .chat import ChatPage, Deployment, assert_exactly_once_in_order, ids, numbered

pytestmark = pytest.mark.browser

LEADER = "() => window.chatDemo.rt.role === 'leader' && window.chatDemo.rt.status === 'open'"
FOLLOWER = "() => window.chatDemo.rt.role === 'follower' && window.chatDemo.rt.status === 'open'"



def streams(deployment: Deployment, user: str) -> tuple[int, int]:
    """(streams opened, streams closed) for `user`, as the server logged them."""
    return len(deployment.log_events("connection.open", user)), len(deployment.log_events("connection.close", user))


def live_streams(deployment: Deployment, user: str) -> list[str]:
    """Ids of `user`'s open streams on every worker, as GET /admin/connections lists them."""
    status, body = deployment.admin("GET", "/admin/connections")
    assert status == 200, body
    return [row["id"] for row in body["connections"] if row["user_id"] == user]


def test_two_tabs_share_one_stream_and_the_survivor_takes_over(deploy, new_context) -> None:
    deployment = deploy()
    context = new_context()
    first = ChatPage.open(context, deployment.base_url, "alice", backoffCap=2000)
    first.wait(LEADER)
    second = ChatPage.open(context, deployment.base_url, "alice", backoffCap=2000)
    second.wait(FOLLOWER)
    published = numbered(deployment, "shared", 3)
    for tab in (first, second):
        assert_exactly_once_in_order(ids(tab.wait_messages(3)), published)
    assert streams(deployment, "alice") == (1, 0), "two tabs must hold one stream between them"
    assert live_streams(deployment, "alice") == [first.page.evaluate("() => window.chatDemo.rt.connectionId")]

    first.page.close()  # the browser releases the leader's Web Lock
    published += numbered(deployment, "handover", 3)  # while nobody leads
    second.wait(LEADER)
    published += numbered(deployment, "after", 2)
    got = second.wait_messages(len(published))
    assert_exactly_once_in_order(ids(got), published)
    # The new leader's stream replaced the old one: two opened in all, one still open.
    wait_until(lambda: streams(deployment, "alice") == (2, 1), 10, message=f"streams {streams(deployment, 'alice')}")
    assert live_streams(deployment, "alice") == [second.page.evaluate("() => window.chatDemo.rt.connectionId")]
    assert second.errors == []
