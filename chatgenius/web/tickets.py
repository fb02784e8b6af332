"""POST /tickets: a single-use stream ticket for browsers, whose EventSource cannot send headers."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from .common import identity, realtime

bp = Blueprint("tickets", __name__)


@bp.post("/tickets")
def issue() -> Response:
    """`{"ticket", "expires_in"}`; only a Bearer token gets one (a ticket cannot buy another)."""
    return jsonify(realtime().issue_ticket(identity()))
