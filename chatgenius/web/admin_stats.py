"""GET /admin/stats: the numbers of /metrics, every worker summed, as JSON (permission admin:sse).

For people without Prometheus; static/admin.html polls it and draws them.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from flask import Blueprint, Response, jsonify

from ..errors import ServiceError
from .common import identity
from .observe import telemetry

bp = Blueprint("admin_stats", __name__)


def require_admin() -> None:
    """401 without a valid token, 403 without the admin:sse permission."""
    if not identity().is_admin:
        raise ServiceError(403, "forbidden", "admin endpoints need the admin:sse permission")


def admin_only(view: Callable[..., Any]) -> Callable[..., Any]:
    """Guard a view defined elsewhere (the exporter's `/metrics`: every endpoint but health needs a user)."""

    @functools.wraps(view)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        require_admin()
        return view(*args, **kwargs)

    return guarded


@bp.get("/admin/stats")
def stats() -> Response:
    require_admin()
    resp = jsonify(telemetry().stats())
    resp.headers["Cache-Control"] = "no-store"
    return resp
