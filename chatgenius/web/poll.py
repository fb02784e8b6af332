"""GET /poll: long-polling over the same cursors as the stream (the rollback path)."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from ..errors import ServiceError
from .common import identity, realtime

bp = Blueprint("poll", __name__)


@bp.get("/poll")
def poll() -> Response:
    """GET /poll: the long-poll fallback for clients without SSE."""
    rt = realtime()
    who = identity()
    channels = rt.authorize(who, request.args.get("channels"))
    raw_timeout = request.args.get("timeout", "25")
    try:
        timeout = float(raw_timeout)
    except ValueError:
        raise ServiceError(400, "bad_timeout", "timeout must be a number of seconds") from None
    if not 0 <= timeout <= rt.settings.poll_max_timeout:
        raise ServiceError(400, "bad_timeout", f"timeout must be between 0 and {rt.settings.poll_max_timeout:g}")
    return jsonify(rt.poll(who, channels, request.args.get("cursor"), timeout))
