"""The demo page and the bundled JS client, served from static/ (nginx serves them in production)."""

from __future__ import annotations

from flask import Blueprint, Response, redirect, send_from_directory

from ..assets import static_dir

STATIC_DIR = static_dir()

bp = Blueprint("static_files", __name__)


@bp.get("/")
def index() -> Response:
    """GET /: the demo page."""
    return send_from_directory(STATIC_DIR, "index.html", max_age=0)


@bp.get("/static/<path:name>")
def asset(name: str) -> Response:
    """GET /static/<name>: the JS client and the demo page's files."""
    return send_from_directory(STATIC_DIR, name, max_age=0)


@bp.get("/admin")
def admin() -> Response:
    """The admin page's short address (the page asks for a token with admin:sse; dev mode mints one)."""
    return redirect("/static/admin.html", 302)  # type: ignore[return-value]
