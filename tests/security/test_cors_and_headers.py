"""CORS from CORS_ORIGIN (exact origins, no credentials, preflights free) and security headers on every response."""

from __future__ import annotations

import pytest
from support.http_json import get_json, request

from chatgenius import close, config
from chatgenius.factory import create_app

from .conftest import ORIGINS, Deployment

ALLOWED = ORIGINS[0]


def preflight(deployment: Deployment, path: str, origin: str, method: str = "GET", headers: str = "authorization, last-event-id"):
    return request(
        "OPTIONS", deployment.base + path, None,
        {"Origin": origin, "Access-Control-Request-Method": method, "Access-Control-Request-Headers": headers},
    )


def test_preflight_allows_the_client_headers_without_auth_or_credentials(deployment: Deployment):
    resp = preflight(deployment, "/stream?channels=channel:general", ALLOWED)
    assert resp.status == 200
    assert resp.headers["Access-Control-Allow-Origin"] == ALLOWED
    allowed = {h.strip().lower() for h in resp.headers["Access-Control-Allow-Headers"].split(",")}
    assert allowed == {"authorization", "last-event-id"}
    assert "GET" in resp.headers["Access-Control-Allow-Methods"]
    assert resp.headers["Access-Control-Max-Age"] == "600"
    assert "Access-Control-Allow-Credentials" not in resp.headers
    assert "Origin" in resp.headers.get("Vary", "")

    resp = preflight(deployment, "/events", ORIGINS[1], "POST", "content-type, authorization")
    assert resp.status == 200 and resp.headers["Access-Control-Allow-Origin"] == ORIGINS[1]
    assert {h.strip().lower() for h in resp.headers["Access-Control-Allow-Headers"].split(",")} == {"authorization", "content-type"}


def test_preflight_bypasses_rate_limits(deployment: Deployment):
    # Exhaust this address' /poll budget (5 a minute) with unauthenticated calls, then preflight.
    statuses = [get_json(f"{deployment.base}/poll?channels=channel:general")[0] for _ in range(6)]
    assert statuses[-1] == 429
    for _ in range(10):
        resp = preflight(deployment, "/poll?channels=channel:general", ALLOWED)
        assert resp.status == 200 and resp.headers["Access-Control-Allow-Origin"] == ALLOWED


def test_actual_responses_expose_retry_after_even_on_errors(deployment: Deployment, user: str):
    status, headers, _ = get_json(f"{deployment.base}/poll?channels=channel:general", {"Origin": ALLOWED, "Authorization": "Bearer x"})
    assert status in (401, 429)
    assert headers["Access-Control-Allow-Origin"] == ALLOWED  # the page can read why it failed
    exposed = {h.strip().lower() for h in headers["Access-Control-Expose-Headers"].split(",")}
    assert {"retry-after", "www-authenticate"} <= exposed
    token = deployment.token(user)
    with deployment.stream(token, "channels=channel:general", {"Origin": ALLOWED}) as client:
        assert client.status == 200 and client.headers["Access-Control-Allow-Origin"] == ALLOWED


@pytest.mark.parametrize(
    "origin",
    ["https://evil.example", "https://app.example.com.evil.example", "https://evilapp.example.com", "http://app.example.com", "null"],
)
def test_a_disallowed_origin_gets_no_allow_origin(deployment: Deployment, origin: str):
    assert "Access-Control-Allow-Origin" not in preflight(deployment, "/stream?channels=channel:general", origin).headers
    _, headers, _ = get_json(f"{deployment.base}/client-config", {"Origin": origin})
    assert "Access-Control-Allow-Origin" not in headers


def test_no_origin_header_means_no_cors_headers(deployment: Deployment):
    _, headers, _ = get_json(f"{deployment.base}/client-config")
    assert not [h for h in headers if h.lower().startswith("access-control-")]


def test_every_response_carries_the_security_headers(deployment: Deployment, user: str):
    token = deployment.token(user)
    auth = {"Authorization": f"Bearer {token}"}
    answers = {
        "health": request("GET", deployment.base + "/healthz"),
        "client_config": request("GET", deployment.base + "/client-config"),
        "ticket": request("POST", deployment.base + "/tickets", b"{}", {**auth, "Content-Type": "application/json"}),
        "unauthorized": request("POST", deployment.base + "/tickets", b"{}"),
        "not_found": request("GET", deployment.base + "/nope"),
        "method_not_allowed": request("DELETE", deployment.base + "/stream"),
        "bad_request": request("POST", deployment.base + "/events", b"{", {**auth, "Content-Type": "application/json"}),
        "preflight": preflight(deployment, "/events", ALLOWED, "POST", "content-type"),
        "page": request("GET", deployment.base + "/"),
    }
    for name, resp in answers.items():
        assert resp.headers["X-Content-Type-Options"] == "nosniff", name
        assert resp.headers["Referrer-Policy"] == "no-referrer", name
        if resp.headers.get("Content-Type", "").startswith("application/json"):
            assert resp.headers["Cache-Control"] == "no-store", name
    assert answers["ticket"].status == 200 and answers["unauthorized"].status == 401
    with deployment.stream(token, "channels=channel:general") as client:
        assert client.status == 200
        assert client.headers["X-Content-Type-Options"] == "nosniff"
        assert client.headers["Cache-Control"] == "no-cache, no-transform"  # the stream keeps its own


def test_wildcard_origin_is_served_as_star_never_with_credentials():
    settings = config.load({"AUTH_MODE": "dev", "CORS_ORIGIN": "*"})
    app = create_app(settings)
    try:
        client = app.test_client()
        resp = client.get("/client-config", headers={"Origin": "https://anyone.example"})
        assert resp.headers["Access-Control-Allow-Origin"] == "*"
        assert "Access-Control-Allow-Credentials" not in resp.headers
        pre = client.options(
            "/events", headers={"Origin": "https://anyone.example", "Access-Control-Request-Method": "POST",
                                "Access-Control-Request-Headers": "Authorization, Content-Type"},
        )
        assert pre.headers["Access-Control-Allow-Origin"] == "*" and "Access-Control-Allow-Credentials" not in pre.headers
    finally:
        close(app)


def test_without_cors_origin_there_is_no_cors_at_all():
    app = create_app(config.load({"AUTH_MODE": "dev"}))
    try:
        resp = app.test_client().get("/client-config", headers={"Origin": "https://app.example.com"})
        assert "Access-Control-Allow-Origin" not in resp.headers
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
    finally:
        close(app)
