"""/admin/connections and /admin/flags (permission admin:sse): thin over chatgenius.admin."""

from __future__ import annotations

import logging

from flask import Blueprint, Response, current_app, jsonify

from .. import log
from ..admin import Admin
from ..errors import ServiceError
from .common import identity, json_body

bp = Blueprint("admin", __name__, url_prefix="/admin")


def admin() -> Admin:
    return current_app.extensions["chatgenius.admin"]


@bp.before_request
def require_admin() -> None:
    """401 without a valid token, 403 without admin:sse, before any view (and any method) runs."""
    who = identity()
    if not who.is_admin:
        log.event("admin.forbidden", logging.WARNING, user_id=who.sub)
        raise ServiceError(403, "forbidden", "admin endpoints need the admin:sse permission")


@bp.get("/connections")
def connections() -> Response:
    return jsonify(admin().connections())


@bp.delete("/connections/<connection_id>")
def kick(connection_id: str) -> Response:
    return jsonify(admin().kick(connection_id, identity().sub))


@bp.get("/flags")
def flags() -> Response:
    return jsonify(admin().current_flags())


@bp.put("/flags")
def set_flags() -> Response:
    return jsonify(admin().set_flags(json_body(), identity().sub))
