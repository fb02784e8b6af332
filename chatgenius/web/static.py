"""The demo page and the bundled JS client, served from static/ (nginx serves them in production)."""

from __future__ import annotations

from flask import Blueprint, Response, send_from_directory

from ..assets import static_dir

STATIC_DIR = static_dir()

bp = Blueprint("static_files", __name__)


@bp.get("/")
def index() -> Response:
    return send_from_directory(STATIC_DIR, "index.html", max_age=0)


@bp.get("/static/<path:name>")
def asset(name: str) -> Response:
    return send_from_directory(STATIC_DIR, name, max_age=0)
