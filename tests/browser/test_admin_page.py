"""The admin page in Chromium against `python app.py` (what `make run` starts): reachable at /admin and
linked from the demo, real numbers (capacity is the embedded server's, not 0), and it does what the
API does: ends a stream and flips ENABLE_SSE / ENABLE_COMPRESSION, each only after a confirmation."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext, Dialog, Page, expect
from support.http_json import get_json, request
from support.procs import REPO_ROOT, free_port, spawn, tail, terminate_tree, wait_until
from support.service import bearer, dev_token

from chatgenius.embedded import CONNECTIONS

from .chat import ChatPage

pytestmark = pytest.mark.browser


class Embedded:
    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.admin_token = dev_token(base_url, "ops", [], ["admin:sse"])

    def api(self, method: str, path: str) -> object:
        resp = request(method, self.base_url + path, headers=bearer(self.admin_token))
        assert resp.status == 200, resp.text
        return resp.json()

    def streams_of(self, user: str) -> list[str]:
        body = self.api("GET", "/admin/connections")
        assert isinstance(body, dict)
        return [c["id"] for c in body["connections"] if c["user_id"] == user]

    def flag(self, name: str) -> bool:
        body = self.api("GET", "/admin/flags")
        assert isinstance(body, dict)
        return body[name]


@pytest.fixture
def embedded(tmp_path: Path) -> Iterator[Embedded]:
    bind = f"127.0.0.1:{free_port()}"
    log = tmp_path / "app.log"
    proc = spawn([sys.executable, "app.py"], log, REPO_ROOT, {"PATH": os.environ["PATH"], "BIND": bind, "PRESENCE_GRACE": "0.5"})
    try:
        wait_until(lambda: get_json(f"http://{bind}/healthz")[0] == 200, 20, 0.1, "python app.py answers", ignore=(OSError,))
        yield Embedded(f"http://{bind}")
    except BaseException:
        print(tail(log))
        raise
    finally:
        terminate_tree(proc, signal.SIGTERM, 10)


def admin_page(context: BrowserContext, base_url: str) -> Page:
    page = context.new_page()
    page.goto(f"{base_url}/admin")
    assert page.url == f"{base_url}/static/admin.html"
    return page


def answer_next_dialog(page: Page, accept: bool, seen: list[str]) -> None:
    def handle(dialog: Dialog) -> None:
        seen.append(dialog.message)
        dialog.accept() if accept else dialog.dismiss()

    page.once("dialog", handle)


def test_admin_page_is_linked_and_shows_the_embedded_servers_capacity(
    embedded: Embedded, new_context: Callable[[], BrowserContext]
) -> None:
    context = new_context()
    demo = context.new_page()
    demo.goto(embedded.base_url + "/")
    demo.locator("#login a[href='/admin']").click()
    expect(demo).to_have_url(embedded.base_url + "/static/admin.html")
    capacity = demo.locator("#table-workers tr", has_text="capacity (streams)").locator("td").last
    expect(capacity).to_have_text(f"{CONNECTIONS:,}")
    expect(demo.locator("#t-workers")).to_have_text("1")
    expect(demo.locator("#t-reader")).to_have_text("up")


def test_admin_page_ends_a_stream_only_after_confirmation(embedded: Embedded, new_context: Callable[[], BrowserContext]) -> None:
    alice = ChatPage.open(new_context(), embedded.base_url, "alice")
    alice.wait_status("open")
    (first,) = wait_until(lambda: embedded.streams_of("alice"), 10, 0.1, "alice's stream is listed")
    page = admin_page(new_context(), embedded.base_url)
    row = page.locator(f"#table-connections tr[data-connection='{first}']")
    expect(row).to_contain_text("alice")
    expect(row).to_contain_text("channel:general")

    seen: list[str] = []
    answer_next_dialog(page, accept=False, seen=seen)
    row.get_by_role("button", name="End").click()
    expect(page.locator("#action-status")).to_have_text("stream left open")
    assert seen == [f"End alice's stream {first}?\nIts client reconnects with its cursor and loses no event."]
    assert embedded.streams_of("alice") == [first]

    answer_next_dialog(page, accept=True, seen=seen)
    row.get_by_role("button", name="End").click()
    expect(page.locator("#action-status")).to_have_text(f"ended alice's stream {first}")
    # The client comes back on a new stream, which the page lists in place of the old one.
    (second,) = wait_until(lambda: [i for i in embedded.streams_of("alice") if i != first], 15, 0.1, "alice reconnected")
    expect(page.locator(f"#table-connections tr[data-connection='{second}']")).to_contain_text("alice")
    expect(row).to_have_count(0)
    assert alice.errors == []


def test_admin_page_flips_runtime_flags_only_after_confirmation(embedded: Embedded, new_context: Callable[[], BrowserContext]) -> None:
    alice = ChatPage.open(new_context(), embedded.base_url, "alice")
    alice.wait_status("open")
    page = admin_page(new_context(), embedded.base_url)
    sse = page.locator("#table-flags tr[data-flag='ENABLE_SSE']")
    expect(sse).to_contain_text("on")

    seen: list[str] = []
    answer_next_dialog(page, accept=False, seen=seen)
    sse.get_by_role("button", name="Turn off").click()
    expect(page.locator("#action-status")).to_have_text("ENABLE_SSE: left as it was")
    assert seen[0].startswith("Turn ENABLE_SSE off for the whole deployment?") and embedded.flag("ENABLE_SSE") is True

    answer_next_dialog(page, accept=True, seen=seen)
    sse.get_by_role("button", name="Turn off").click()
    expect(page.locator("#action-status")).to_have_text("ENABLE_SSE is now off on every worker")
    expect(sse.get_by_role("button")).to_have_text("Turn on")
    assert embedded.flag("ENABLE_SSE") is False
    alice.wait_status("polling")

    answer_next_dialog(page, accept=True, seen=seen)
    sse.get_by_role("button", name="Turn on").click()
    expect(page.locator("#action-status")).to_have_text("ENABLE_SSE is now on on every worker")
    assert embedded.flag("ENABLE_SSE") is True

    gzip = page.locator("#table-flags tr[data-flag='ENABLE_COMPRESSION']")
    answer_next_dialog(page, accept=True, seen=seen)
    gzip.get_by_role("button", name="Turn on").click()
    expect(page.locator("#action-status")).to_have_text("ENABLE_COMPRESSION is now on on every worker")
    assert embedded.flag("ENABLE_COMPRESSION") is True
    assert [m.split("?")[0] for m in seen] == [
        "Turn ENABLE_SSE off for the whole deployment", "Turn ENABLE_SSE off for the whole deployment",
        "Turn ENABLE_SSE on for the whole deployment", "Turn ENABLE_COMPRESSION on for the whole deployment",
    ]
