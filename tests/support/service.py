"""Talk to a running ChatGenius realtime service the way its clients do (dev-mode tokens)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from .http_json import post_json, request

PUBLISHER = ["publish:events"]


def dev_token(base: str, sub: str, channels: list[str] | None = None, permissions: list[str] | None = None, ttl: int = 3600) -> str:
    """A token from POST /dev/token (AUTH_MODE=dev), verified by the same path as Auth0's."""
    status, _, body = post_json(
        f"{base}/dev/token",
        {"sub": sub, "channels": channels or [], "permissions": permissions or [], "ttl": ttl},
    )
    assert status == 200, body
    return body["token"]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def publish(base: str, token: str, channel: str, data: Mapping[str, Any], etype: str = "message.created") -> str | None:
    status, _, body = post_json(f"{base}/events", {"channel": channel, "type": etype, "data": dict(data)}, bearer(token))
    assert status == 201, body
    return body["ids"][0]


def publish_batch(base: str, token: str, events: list[dict[str, Any]]) -> list[str | None]:
    status, _, body = post_json(f"{base}/events", {"events": events}, bearer(token))
    assert status == 201, body
    return body["ids"]


def service_env(redis_url: str | None, **extra: str) -> dict[str, str]:
    """The environment of a test deployment: dev auth, short heartbeat, quiet logs."""
    env = {"AUTH_MODE": "dev", "HEARTBEAT_INTERVAL": "1", "LOG_LEVEL": "INFO"}
    # Per-user limits out of the way of tests about other things; tests/security sets them tight.
    env.update(
        MAX_CONNECTIONS_PER_USER="10000", RATE_LIMIT_CONNECT="100000/minute",
        RATE_LIMIT_PUBLISH="100000/minute", RATE_LIMIT_POLL="100000/minute",
    )
    if redis_url:
        env["REDIS_URL"] = redis_url
    env.update(extra)
    return env


def connected_stream(base: str, token: str, channels: str, last_event_id: str | None = None):
    """An open SSE stream on `channels`, read up to its system.connected frame."""
    from .sse_client import SSEClient

    headers = bearer(token) | ({"Last-Event-ID": last_event_id} if last_event_id else {})
    client = SSEClient(f"{base}/stream?channels={channels}", headers, timeout=10)
    assert client.status == 200
    client.read_until(lambda f: f.event == "system.connected", 5)
    return client


def publish_request_counts(base: str, ops_token: str) -> dict[str, float]:
    """chatgenius_publish_requests_total by path ("server", "wsgi", "flask"), summed over the workers."""
    resp = request("GET", base + "/metrics", headers=bearer(ops_token))
    assert resp.status == 200, resp.text
    counts = dict.fromkeys(("server", "wsgi", "flask"), 0.0)
    for family in text_string_to_metric_families(resp.text):
        if family.name == "chatgenius_publish_requests":
            counts.update({s.labels["path"]: s.value for s in family.samples if s.name.endswith("_total")})
    return counts
