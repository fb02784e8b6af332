"""Health, readiness and the client's configuration: no identity needed."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from .common import realtime

bp = Blueprint("ops", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    """GET /healthz: the process answers (liveness)."""
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz() -> Response | tuple[Response, int]:
    """GET /readyz: 503 while the bus reader is down or the worker drains (readiness)."""
    rt = realtime()
    reason = rt.bus.health()
    if rt.draining:
        reason = "draining"
    if reason is not None:
        return jsonify({"status": "unavailable", "reason": reason}), 503
    return jsonify({"status": "ready"})


@bp.get("/client-config")
def client_config() -> Response:
    """GET /client-config: which transport the JS client should use, and where."""
    rt = realtime()
    return jsonify(
        {
            "transport": "sse" if rt.flags.enable_sse else "poll",
            "stream_url": "/stream",
            "poll_url": "/poll",
            "heartbeat_interval": rt.settings.heartbeat_interval,
            "compression": rt.flags.enable_compression,
        }
    )
