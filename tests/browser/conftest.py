"""Fixtures of the browser suite: one headless Chromium per session, a fresh deployment per test.

Playwright and gevent: tests/conftest.py monkey-patches the process before
anything else, and Playwright's *sync* API is used here anyway, in the test's
own thread. That composes because Playwright runs its asyncio loop inside a
greenlet of its own and switches into it for every call; in the patched
process asyncio's selector is gevent's (`selectors.DefaultSelector` is
`gevent.selectors.GeventSelector`), so when the loop waits it yields to
gevent's hub, which switches back to Playwright's greenlet once the driver's
pipe is readable, and the threads asyncio uses for the driver subprocess are
green too. Between calls the loop does not run, as with the sync API anywhere.
Checked: the whole suite, waits of tens of seconds included, runs this way.
Should a future Playwright or gevent break it, the fallback is the async API
in a subprocess the test drives; do not drop the monkey patching, the support
code (Redis clients, SSEClient) relies on it.

Chromium is Debian's (/usr/bin/chromium, installed by .ci/run); no browser is
ever downloaded. Without it the suite skips locally and fails under CI (any truthy CI).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack

import pytest
from playwright.sync_api import Browser, BrowserContext, expect

from .chat import Deployment
from .wire import WIRE_TAP


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    report = yield
    setattr(item, f"report_{report.when}", report)  # fixtures print server logs when the test failed
    return report


def _failed(request: pytest.FixtureRequest) -> bool:
    report = getattr(request.node, "report_call", None)
    return report is None or report.failed


# Assertions poll; on a loaded CI box 5 s (Playwright's default) is too tight for a reconnect.
expect.set_options(timeout=10_000)


@pytest.fixture
def new_context(browser: Browser) -> Iterator[Callable[[], BrowserContext]]:
    """Browser contexts (one per simulated browser: own storage, locks, BroadcastChannel), closed after the test."""
    with ExitStack() as stack:

        def make() -> BrowserContext:
            # Playwright polls wait_for_function predicates with eval() inside the page, which the
            # pages' CSP (no 'unsafe-eval') refuses after the first poll; these tests are about the
            # client, and the CSP itself is proven with plain contexts (tests/deploy/test_nginx_hardening.py).
            context = browser.new_context(viewport={"width": 1100, "height": 640}, bypass_csp=True)
            context.add_init_script(WIRE_TAP)  # what the server sent, before the client de-duplicates
            context.set_default_timeout(15_000)
            stack.callback(context.close)
            return context

        yield make


@pytest.fixture
def deploy(redis_url: str, request: pytest.FixtureRequest) -> Iterator[Callable[..., Deployment]]:
    """Start deployments on the session Redis (emptied per test); every process is stopped, pass or fail."""
    made: list[Deployment] = []

    def make(**env: str) -> Deployment:
        deployment = Deployment(redis_url, **env)
        made.append(deployment)
        return deployment.start()

    try:
        yield make
    finally:
        for deployment in made:
            if _failed(request):
                print(deployment.log_tail())
            deployment.close()
