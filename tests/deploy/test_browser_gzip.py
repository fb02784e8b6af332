"""Chromium's own EventSource reads the gzip stream through nginx and fires each event as it is published."""

from __future__ import annotations

import time

import pytest
from support.service import publish

from .conftest import Deployment

pytestmark = [pytest.mark.nginx, pytest.mark.browser]

LISTEN = """async ([token, channel]) => {
  const r = await fetch('/tickets', {method: 'POST', headers: {Authorization: 'Bearer ' + token}});
  const {ticket} = await r.json();
  window.received = [];
  const source = new EventSource(`/stream?channels=${channel}&ticket=${ticket}`);
  source.addEventListener('message.created', (e) => window.received.push(JSON.parse(e.data).data.n));
  await new Promise((resolve) => source.addEventListener('system.connected', resolve, {once: true}));
}"""


def test_chromium_decodes_the_gzip_stream_event_by_event(deployment: Deployment, browser):
    token = deployment.token("chromium-gzip")
    chan = "channel:browsergzip"
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(f"{deployment.base}/healthz")
        with page.expect_response(lambda r: "/stream?" in r.url) as stream:
            page.evaluate(LISTEN, [token, chan])
        assert stream.value.status == 200
        assert stream.value.headers["content-encoding"] == "gzip"  # Chromium asked (Accept-Encoding) and got it
        for n in range(3):
            started = time.monotonic()
            publish(deployment.base, token, chan, {"n": n})
            page.wait_for_function(f"window.received.length === {n + 1}", timeout=1000)
            assert time.monotonic() - started < 1.0
        assert page.evaluate("window.received") == [0, 1, 2]
    finally:
        context.close()
