"""The demo chat between two browsers through the real service, and what hostile text cannot do."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from playwright.sync_api import expect
from support.procs import REPO_ROOT, wait_until

from .chat import GENERAL, RANDOM, ChatPage

pytestmark = pytest.mark.browser

SCREENSHOT = REPO_ROOT / "docs" / "demo.png"
XSS = "<img src=x onerror=window.__xss=1>"
# A publisher trying to add an SSE event of its own to the frame (contract: "Nothing a publisher
# sends can add a line, a field or an event to the frame").
FRAMING = "first line\n\nevent: evil\ndata: {\"type\":\"evil\"}\nid: 999-999\n\nretry: 1\r\nlast line"


def test_two_browsers_chat_edit_react_delete_and_see_hostile_text_as_text(deploy, new_context, tmp_path: Path) -> None:
    deployment = deploy()
    alice = ChatPage.open(new_context(), deployment.base_url, "alice")
    bob = ChatPage.open(new_context(), deployment.base_url, "bob")
    for page in (alice, bob):
        page.wait_status("open", "sse")
        expect(page.page.locator("#badge")).to_have_text("open · sse")

    # Messages both ways, rendered in both browsers.
    alice.send("Morning bob! The realtime service is live.")
    expect(bob.message("Morning bob! The realtime service is live.")).to_be_visible()
    bob.send("Nice. Does it come back by itself after a deploy?")
    expect(alice.message("Nice. Does it come back by itself after a deploy?")).to_be_visible()
    deployment.publish(GENERAL, {"message_id": "carol-1", "user_id": "carol", "text": "It does: clients resume from their last event id."})
    for page in (alice, bob):
        expect(page.message("It does: clients resume from their last event id.")).to_be_visible()

    # A reaction from alice shows as a chip in bob's browser.
    carol_msg = alice.message("It does: clients resume from their last event id.")
    carol_msg.hover()
    carol_msg.get_by_role("button", name="react ★").click()
    expect(bob.message("It does: clients resume from their last event id.").locator(".chip")).to_have_text("★ 1")

    # An edit: alice fixes her typo, bob sees the new text marked (edited).
    alice.send("Nothing is lost and nothing arives twice.")
    mine = alice.message("Nothing is lost and nothing arives twice.")
    mine.hover()
    mine.get_by_role("button", name="edit message").click()
    alice.page.get_by_role("textbox", name="edit message").fill("Nothing is lost and nothing arrives twice.")
    alice.page.get_by_role("textbox", name="edit message").press("Enter")
    fixed = bob.message("Nothing is lost and nothing arrives twice.")
    expect(fixed.locator(".edited")).to_have_text("(edited)")
    expect(bob.page.get_by_text("Nothing is lost and nothing arives twice.")).to_have_count(0)

    # A delete: gone from both browsers.
    alice.send("oops, wrong channel")
    expect(bob.message("oops, wrong channel")).to_be_visible()
    oops = alice.message("oops, wrong channel")
    oops.hover()
    oops.get_by_role("button", name="delete message").click()
    for page in (alice, bob):
        expect(page.message("oops, wrong channel")).to_have_count(0)

    # Hostile text: bob posts markup in #random; alice's tab shows an unread count, then the text.
    bob.select(RANDOM)
    bob.send(XSS)
    expect(alice.page.locator("#channel-list button[data-channel='channel:random'] .unread")).to_have_text("1")
    alice.select(RANDOM)
    expect(alice.message(XSS)).to_be_visible()
    for page in (alice, bob):
        assert page.page.evaluate("() => window.__xss") is None
        assert page.page.locator("#messages img").count() == 0

    # A framing injection from a publisher arrives as one message, text intact, no `evil` event.
    before = len(bob.events())
    framing_id = deployment.publish(RANDOM, {"message_id": "framing", "user_id": "webhook", "text": FRAMING})
    bob.wait("(n) => window.chatDemo.events.length > n", before)
    bob.page.wait_for_timeout(300)  # room for a forged second event to show up, were there one
    new = [e for e in bob.events()[before:] if e["type"] not in ("user.presence", "user.typing")]
    assert [(e["id"], e["type"], e["data"]["text"]) for e in new] == [(framing_id, "message.created", FRAMING)]
    expect(bob.page.locator("#messages .msg .text").last).to_have_text(re.compile(r"^first line\s+event: evil"))
    assert bob.page.locator("#messages .msg").last.locator(".text").evaluate("n => n.textContent") == FRAMING

    # Typing: bob types in #general, alice sees it. The demo announces at most once per 2 s per
    # channel (so does the server), and bob typed there a moment ago: keep typing, as people do.
    alice.select(GENERAL)
    deployment.publish(RANDOM, {"message_id": "carol-2", "user_id": "carol", "text": "Lunch at noon?"})
    expect(alice.page.locator("#channel-list button[data-channel='channel:random'] .unread")).to_have_text("1")
    bob.select(GENERAL)

    def bob_types() -> bool:
        bob.page.press("#composer-input", "a")
        return alice.page.locator("#typing").inner_text() == "bob is typing…"

    wait_until(bob_types, 10, 0.25, "alice never saw bob typing")

    # Presence: both are online in each other's people list.
    expect(alice.page.locator("#people-list li[data-user='bob']")).to_have_attribute("data-presence", "online")
    expect(bob.page.locator("#people-list li[data-user='alice']")).to_have_attribute("data-presence", "online")
    for page in (alice, bob):
        expect(page.page.locator("#banner")).to_be_hidden()
        assert page.errors == [], page.errors

    # The README screenshot: alice's view of #general, with the badge and a reaction.
    shot = tmp_path / "demo.png"
    alice.page.mouse.move(0, 0)
    alice.page.screenshot(path=str(shot))
    size = shot.stat().st_size
    assert 10_000 < size < 300_000, f"screenshot is {size} bytes"
    # Written into the tree only when missing or asked for, so a test run does not dirty the checkout.
    if not SCREENSHOT.exists() or os.environ.get("UPDATE_SCREENSHOTS") == "1":
        SCREENSHOT.write_bytes(shot.read_bytes())
