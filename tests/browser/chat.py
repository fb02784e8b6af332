"""Drivers for the browser suite: a restartable deployment and the demo chat page.

`Deployment` is real gunicorn (2 gevent workers) on real Redis that can be
stopped and started again on the same port, with the logs of every generation.
`ChatPage` drives static/index.html through Playwright and reads what the page's
client delivered from `window.chatDemo` (static/demo.js), so assertions are
about the events the app saw, not about timing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

from playwright.sync_api import BrowserContext, Page
from support.gunicorn import Gunicorn
from support.http_json import request
from support.procs import free_port
from support.service import bearer, dev_token, publish, service_env

from .wire import wire_ids

WORKERS = 2
GENERAL = "channel:general"
RANDOM = "channel:random"


class Deployment:
    """gunicorn with `WORKERS` gevent workers on `redis_url`; `restart()` keeps the port."""

    def __init__(self, redis_url: str, **env: str) -> None:
        # A short graceful timeout makes the drain (system.reconnect spread over a third of it, at
        # least 0.5 s) and so every stop quick; a long-poll in flight is cut after it.
        self.env = service_env(redis_url, GRACEFUL_TIMEOUT="2", **env)
        self.port = free_port()
        self.generations: list[Gunicorn] = []
        self._publisher: str | None = None

    @property
    def current(self) -> Gunicorn:
        return self.generations[-1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, **env: str) -> Deployment:
        """Start a new generation on the same port; `env` overrides this and later generations."""
        self.env.update(env)
        server = Gunicorn(workers=WORKERS, port=self.port, env=self.env)
        self.generations.append(server)
        server.start()
        return self

    def stop(self) -> None:
        self.current.stop()

    def close(self) -> None:
        for server in self.generations:
            server.close()

    # -- talking to it as the backend and as an operator -----------------------------------
    def publish(self, channel: str, data: Mapping[str, Any], etype: str = "message.created") -> str:
        """Publish as the ChatGenius backend; returns the event's cursor."""
        if self._publisher is None:
            self._publisher = dev_token(self.base_url, "backend", ["channel:*"], ["publish:events"])
        event_id = publish(self.base_url, self._publisher, channel, data, etype)
        assert event_id is not None
        return event_id

    def admin(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        token = dev_token(self.base_url, "ops", [], ["admin:sse"], ttl=300)
        headers = {**bearer(token), "Accept": "application/json"}
        payload = None
        if body is not None:
            headers["Content-Type"] = "application/json"
            payload = json.dumps(body).encode()
        resp = request(method, f"{self.base_url}{path}", payload, headers)
        try:
            parsed = resp.json()
        except ValueError:
            parsed = resp.text
        return resp.status, parsed

    # -- what the server saw ---------------------------------------------------------------
    def json_logs(self) -> list[dict[str, Any]]:
        return [line for server in self.generations for line in server.json_logs()]

    def log_events(self, name: str, user: str | None = None) -> list[dict[str, Any]]:
        return [r for r in self.json_logs() if r.get("event") == name and (user is None or r.get("user_id") == user)]

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(f"--- {s.log_path}\n" + "\n".join(s.log_lines()[-lines:]) for s in self.generations)


class ChatPage:
    """The demo chat in one tab, logged in as `user`."""

    def __init__(self, page: Page, user: str) -> None:
        self.page = page
        self.user = user
        self.errors: list[str] = []
        page.on("pageerror", lambda exc: self.errors.append(str(exc)))

    @classmethod
    def open(cls, context: BrowserContext, base_url: str, user: str, **knobs: int) -> ChatPage:
        """Open `/?user=...` (knobs: ttl, backoffCap, recheck, firstByte: see static/demo.js)."""
        chat = cls(context.new_page(), user)
        chat.page.goto(f"{base_url}/?{urlencode({'user': user, **knobs})}")
        chat.page.wait_for_function("() => window.chatDemo !== undefined", timeout=10_000)
        return chat

    # -- waiting -----------------------------------------------------------------------------
    def wait(self, expression: str, arg: Any = None, timeout: float = 15.0) -> Any:
        """Poll a JS expression `(arg) => ...` in the page until it is truthy; returns its value."""
        handle = self.page.wait_for_function(expression, arg=arg, timeout=timeout * 1000, polling=50)
        return handle.json_value()

    def wait_status(self, status: str, transport: str | None = None, timeout: float = 15.0) -> None:
        self.wait(
            "([s, t]) => window.chatDemo.rt.status === s && (t === null || window.chatDemo.rt.transport === t)",
            [status, transport],
            timeout,
        )

    def wait_cursor(self, timeout: float = 15.0) -> str:
        """Wait until the client holds a cursor: only then is "from now on" defined for it
        (a client with no cursor starts at the newest position, contract: /poll)."""
        return self.wait("window.chatDemo && window.chatDemo.rt.lastEventId", timeout=timeout)

    def wait_messages(self, count: int, timeout: float = 15.0) -> list[dict[str, Any]]:
        """Wait until at least `count` message.created envelopes were delivered; return them all."""
        self.wait("(n) => window.chatDemo.events.filter((e) => e.type === 'message.created').length >= n", count, timeout)
        return self.messages()

    # -- reading -----------------------------------------------------------------------------
    def events(self) -> list[dict[str, Any]]:
        return self.page.evaluate("() => window.chatDemo.events")

    def messages(self) -> list[dict[str, Any]]:
        return [e for e in self.events() if e["type"] == "message.created"]

    def wire_ids(self) -> list[str]:
        """message.created ids the server sent to this page, duplicates kept (tests/browser/wire.py)."""
        return wire_ids(self.page)

    def statuses(self) -> list[str]:
        return [s["status"] for s in self.page.evaluate("() => window.chatDemo.statuses")]

    @property
    def status(self) -> str:
        return self.page.evaluate("() => window.chatDemo.rt.status")

    @property
    def role(self) -> str:
        return self.page.evaluate("() => window.chatDemo.rt.role")

    def texts(self) -> list[str]:
        """The message texts on screen, as rendered."""
        return self.page.locator("#messages .msg .text").all_inner_texts()

    # -- acting ------------------------------------------------------------------------------
    def send(self, text: str) -> None:
        self.page.fill("#composer-input", text)
        self.page.press("#composer-input", "Enter")

    def select(self, channel: str) -> None:
        self.page.click(f"#channel-list button[data-channel='{channel}']")

    def message(self, text: str):
        """The locator of the message showing `text` exactly."""
        return self.page.locator("#messages .msg").filter(has=self.page.get_by_text(text, exact=True))


def numbered(deployment: Deployment, tag: str, count: int, channel: str = GENERAL) -> list[str]:
    """Publish `count` messages as the backend; their cursors in publish order."""
    return [
        deployment.publish(channel, {"message_id": f"{tag}-{n}", "user_id": "backend", "text": f"{tag} {n}"})
        for n in range(count)
    ]


def ids(envelopes: list[dict[str, Any]]) -> list[str]:
    return [e["id"] for e in envelopes]


def assert_exactly_once_in_order(got: list[str], published: list[str], wire: list[str] | None = None) -> None:
    """Every published id delivered once, in publish order, nothing else.

    `wire` (tests/browser/wire.py) is what the server sent to the page before
    the client's de-duplication: given, it must hold each published id exactly
    once too, so a server that sends an event twice fails even though the app
    saw it once.
    """
    duplicates = sorted({i for i in got if got.count(i) > 1})
    assert not duplicates, f"delivered more than once: {duplicates}"
    missing = [i for i in published if i not in got]
    assert not missing, f"never delivered: {missing}"
    assert got == published, f"out of order or unexpected: got {got}, published {published}"
    if wire is not None:
        sent_twice = sorted({i for i in wire if wire.count(i) > 1})
        assert not sent_twice, f"the server sent these more than once (the client hid it): {sent_twice}"
        assert wire == published, f"on the wire: {wire}, published {published}"
