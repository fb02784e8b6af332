"""/admin/connections and /admin/flags (permission admin:sse): thin over chatgenius.admin."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify

from ..admin import Admin
from .common import identity, json_body, require_admin

bp = Blueprint("admin", __name__, url_prefix="/admin")


def admin() -> Admin:
    """This app's Admin use cases."""
    return current_app.extensions["chatgenius.admin"]


bp.before_request(require_admin)  # before any view (and any method) runs


@bp.get("/connections")
def connections() -> Response:
    """GET /admin/connections: every stream of the deployment."""
    return jsonify(admin().connections())


@bp.delete("/connections/<connection_id>")
def kick(connection_id: str) -> Response:
    """DELETE /admin/connections/<id>: end one stream, wherever it is."""
    return jsonify(admin().kick(connection_id, identity().sub))


@bp.get("/flags")
def flags() -> Response:
    """GET /admin/flags: the runtime flags in force."""
    return jsonify(admin().current_flags())


@bp.put("/flags")
def set_flags() -> Response:
    """PUT /admin/flags: override runtime flags for every process."""
    return jsonify(admin().set_flags(json_body(), identity().sub))
