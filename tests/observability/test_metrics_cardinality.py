"""/metrics stays bounded: a made-up HTTP method is refused before the exporter and creates no series.

Real gunicorn (2 gevent workers, multiprocess metrics) on a real Redis. Before,
every new uppercase method name (`curl -X QAAA /healthz`) added ~16 series.
"""

from __future__ import annotations

import http.client
import secrets
import string
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families
from support.gunicorn import Gunicorn
from support.http_json import request
from support.redis_server import RedisServer
from support.service import bearer, dev_token, service_env

KNOWN = {"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS"}


@pytest.fixture(scope="module")
def server(redis_server: RedisServer) -> Iterator[Gunicorn]:
    with Gunicorn(workers=2, env=service_env(redis_server.url)) as g:
        yield g


def scrape(g: Gunicorn, token: str) -> tuple[int, set[str]]:
    """(bytes of the answer, every method label value in it)."""
    resp = request("GET", g.base_url + "/metrics", headers=bearer(token))
    assert resp.status == 200, resp.text
    methods = {s.labels["method"] for f in text_string_to_metric_families(resp.text) for s in f.samples if "method" in s.labels}
    return len(resp.body), methods


def raw_method(g: Gunicorn, method: str, path: str) -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection("127.0.0.1", g.port, timeout=5)
    try:
        conn.request(method, path)
        resp = conn.getresponse()
        resp.body = resp.read()  # type: ignore[attr-defined]
        return resp
    finally:
        conn.close()


def test_unknown_methods_are_refused_and_create_no_series(server: Gunicorn):
    token = dev_token(server.base_url, "prometheus", [], ["admin:sse"])
    scrape(server, token)  # the scrape's own series exist from here on
    size_before, _ = scrape(server, token)
    invented = {"Q" + "".join(secrets.choice(string.ascii_uppercase) for _ in range(6)) for _ in range(40)} | {"PATCH", "TRACE"}
    for method in sorted(invented):
        for path in ("/healthz", "/events", "/nowhere"):
            resp = raw_method(server, method, path)
            assert resp.status == 405, (method, path, resp.status)
            assert resp.getheader("Content-Type", "").startswith("application/json")
            assert set(resp.getheader("Allow", "").replace(" ", "").split(",")) == KNOWN
    size_after, methods = scrape(server, token)
    assert methods <= KNOWN, sorted(methods - KNOWN)[:5]
    assert size_after < size_before + 4096, (size_before, size_after)  # a few counters moved; no new families of series
