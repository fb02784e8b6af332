"""POST /events: the backend publishes here."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from .common import identity, json_body, realtime

bp = Blueprint("publish", __name__)


@bp.post("/events")
def publish() -> tuple[Response, int]:
    rt = realtime()
    who = identity()
    ids = rt.publish(who, json_body())
    return jsonify({"ids": ids}), 201
