"""The shipped nginx.conf in front of real gunicorn: unknown methods stop at the edge, HTML pages carry the CSP.

Chromium loads the demo and the admin page through nginx under that policy and
reports no violation, so the policy is strict and still lets both pages work.
"""

from __future__ import annotations

import http.client
from collections.abc import Iterator
from contextlib import ExitStack

import pytest
from playwright.sync_api import Browser
from support.http_json import request
from support.procs import wait_until
from support.sse_client import SSEClient

from chatgenius.web.security import CONTENT_SECURITY_POLICY

from .conftest import Deployment, start_deployment

pytestmark = [pytest.mark.nginx]

PAGES = ["/", "/static/index.html", "/static/admin.html"]


@pytest.fixture(scope="module")
def edge(nginx_binary: str, redis_binary: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    with ExitStack() as stack:
        # The default heartbeat: a closed client must be noticed without one.
        yield start_deployment(stack, redis_binary, tmp_path_factory.mktemp("edge"), 1, HEARTBEAT_INTERVAL="15")


def send(port: int, method: str, path: str) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request(method, path)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


@pytest.mark.parametrize("method", ["QAAA", "PATCH", "TRACE", "PROPFIND"])
def test_nginx_refuses_unknown_methods_without_asking_the_app(edge: Deployment, method: str):
    path = f"/healthz?probe={method}"
    status, headers, body = send(edge.nginx.port, method, path)
    assert status == 405, body
    assert headers["content-type"] == "application/json" and b"method_not_allowed" in body
    assert set(headers["allow"].replace(" ", "").split(",")) == {"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS"}
    line = wait_until(lambda: [x for x in edge.nginx.access_log_lines() if f'"{method} /healthz' in x], 5)[-1]
    assert "upstream=-" in line, line  # gunicorn never saw it


@pytest.mark.parametrize("path", PAGES)
def test_html_pages_carry_the_csp_from_nginx_and_from_the_app(edge: Deployment, path: str):
    for base in (edge.base, edge.hosts[0].base_url):  # nginx serves the files itself; the app serves them too
        resp = request("GET", base + path)
        assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/html"), (base, resp.status)
        assert resp.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY, base
        assert "frame-ancestors 'none'" in resp.headers["Content-Security-Policy"]
        assert resp.headers["X-Frame-Options"] == "DENY"


def test_known_methods_still_reach_the_app(edge: Deployment):
    status, headers, _ = send(edge.nginx.port, "OPTIONS", "/events")
    assert status in (200, 204), status
    assert request("GET", edge.base + "/healthz").status == 200


VIOLATIONS = """() => {
  window.cspViolations = [];
  document.addEventListener('securitypolicyviolation', (e) => window.cspViolations.push(e.violatedDirective + ' ' + e.blockedURI));
}"""


OPEN_OVER_SSE = "() => window.chatDemo && window.chatDemo.rt.status === 'open' && window.chatDemo.rt.transport === 'sse'"


@pytest.mark.browser
@pytest.mark.parametrize("base_of", ["nginx", "app"])
def test_chromium_runs_both_pages_under_the_policy(edge: Deployment, browser: Browser, base_of: str):
    base = edge.base if base_of == "nginx" else edge.hosts[0].base_url
    context = browser.new_context()
    try:
        context.add_init_script(f"({VIOLATIONS})()")
        console: list[str] = []
        page = context.new_page()
        page.on("console", lambda msg: console.append(msg.text) if "Content Security Policy" in msg.text else None)
        page.goto(f"{base}/?user=csp-{base_of}")
        page.wait_for_function(OPEN_OVER_SSE, timeout=15_000)
        assert page.evaluate("window.cspViolations") == [] and console == []
        admin = context.new_page()
        admin.on("console", lambda msg: console.append(msg.text) if "Content Security Policy" in msg.text else None)
        admin.goto(f"{base}/static/admin.html")
        admin.wait_for_function("() => document.getElementById('status').textContent.startsWith('updated')", timeout=15_000)
        assert admin.evaluate("window.cspViolations") == [] and console == []
        # The policy is in force: an inline script injected into the page does not run.
        admin.evaluate("""() => { const s = document.createElement('script'); s.textContent = 'window.injected = 1';
                                  document.body.appendChild(s); }""")
        assert admin.evaluate("window.injected") is None
        assert any("script-src" in v for v in admin.evaluate("window.cspViolations"))
    finally:
        context.close()


def test_a_client_closing_at_nginx_frees_its_slot_promptly(edge: Deployment):
    """nginx closes the upstream connection when its client goes; the app notices without a heartbeat."""
    user = "edge-closer"
    client = SSEClient(f"{edge.base}/stream?channels=channel:edge", {"Authorization": f"Bearer {edge.token(user)}"})
    assert client.status == 200 and client.next(5).event == "system.connected"
    with edge.redis.client() as redis:
        assert redis.zcard("cg:c:{" + user + "}") == 1
        client.close()
        wait_until(lambda: redis.zcard("cg:c:{" + user + "}") == 0, 5, 0.05, "the lease is released")
