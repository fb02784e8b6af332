"""POST /events: the backend publishes here (the use case is Realtime.publish)."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from ..publishing import answer
from .common import identity, json_body, realtime
from .observe import telemetry

bp = Blueprint("publish", __name__)


@bp.post("/events")
def publish() -> tuple[Response, int, dict[str, str]]:
    """POST /events, the requests web/publish_fast.py passes on (its usual ones it answers itself)."""
    telemetry().publish_request("flask")
    done = realtime().publish(identity(), json_body(), request.headers.get("Idempotency-Key"))
    body, status, headers = answer(done)
    return jsonify(body), status, headers
