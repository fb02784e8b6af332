"""Tiny JSON-over-HTTP helpers that return 4xx/5xx answers instead of raising.

Tests assert on error statuses and bodies as often as on successes, so a
helper that throws on 404 (urllib) would make them read backwards.
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Response:
    """A complete HTTP answer; `headers` lookups are case-insensitive."""

    status: int
    headers: http.client.HTTPMessage
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def json(self) -> Any:
        """Parsed body, or None for an empty one."""
        return json.loads(self.body) if self.body.strip() else None


def request(
    method: str,
    url: str,
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 10.0,
) -> Response:
    """One request on a fresh connection; never raises for an HTTP status."""
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"only http:// URLs are supported: {url!r}")
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    conn = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=timeout)
    try:
        conn.request(method, target, body=body, headers=dict(headers or {}))
        resp = conn.getresponse()
        return Response(resp.status, resp.headers, resp.read())
    finally:
        conn.close()


def post_json(
    url: str, body: Any, headers: Mapping[str, str] | None = None, timeout: float = 10.0
) -> tuple[int, http.client.HTTPMessage, Any]:
    """POST `body` as JSON; return (status, headers, parsed JSON or None if empty)."""
    hdrs = {"Content-Type": "application/json", "Accept": "application/json", **(headers or {})}
    resp = request("POST", url, json.dumps(body).encode(), hdrs, timeout)
    return resp.status, resp.headers, resp.json()


def get_json(url: str, headers: Mapping[str, str] | None = None, timeout: float = 10.0) -> tuple[int, http.client.HTTPMessage, Any]:
    """GET with Accept: application/json; return (status, headers, parsed JSON or None if empty)."""
    hdrs = {"Accept": "application/json", **(headers or {})}
    resp = request("GET", url, None, hdrs, timeout)
    return resp.status, resp.headers, resp.json()
