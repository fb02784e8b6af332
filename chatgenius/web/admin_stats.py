"""GET /admin/stats: the numbers of /metrics, every worker summed, as JSON (permission admin:sse).

For people without Prometheus; static/admin.html polls it and draws them.
"""

from __future__ import annotations

import functools
import hmac
from collections.abc import Callable
from typing import Any

from flask import Blueprint, Response, jsonify, request

from .common import require_admin
from .observe import telemetry

bp = Blueprint("admin_stats", __name__)


def admin_only(view: Callable[..., Any]) -> Callable[..., Any]:
    """Guard a view defined elsewhere (the exporter's `/metrics`: every endpoint but health needs a user)."""

    @functools.wraps(view)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        require_admin()
        return view(*args, **kwargs)

    return guarded


def metrics_guard(metrics_token: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """`/metrics`'s guard: METRICS_TOKEN as a bearer when it is set (a scraper's credential that does not
    expire, good for /metrics only), else, and always as well, a user token with admin:sse."""
    if not metrics_token:
        return admin_only
    expected = f"Bearer {metrics_token}".encode()

    def guard(view: Callable[..., Any]) -> Callable[..., Any]:
        checked = admin_only(view)

        @functools.wraps(view)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            sent = request.headers.get("Authorization", "").encode("latin-1", "replace")
            if hmac.compare_digest(sent, expected):
                return view(*args, **kwargs)
            return checked(*args, **kwargs)

        return guarded

    return guard


@bp.get("/admin/stats")
def stats() -> Response:
    """GET /admin/stats: every worker's metrics as JSON, for admins."""
    require_admin()
    resp = jsonify(telemetry().stats())
    resp.headers["Cache-Control"] = "no-store"
    return resp
