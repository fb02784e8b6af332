"""GET /openapi.json: docs/openapi.yaml as JSON, so tools read the API from the service itself.

The YAML stays the one source (the repository's docs/, the wheel's package
data: chatgenius/assets.py); it is parsed once, on the first request.
"""

from __future__ import annotations

import functools
import json
from typing import Any

import yaml
from flask import Blueprint, Response

from ..assets import openapi_path

bp = Blueprint("apidoc", __name__)


@functools.cache
def document() -> dict[str, Any]:
    """The OpenAPI document (safe_load: plain data, no tags that build objects)."""
    return yaml.safe_load(openapi_path().read_text(encoding="utf-8"))


@functools.cache
def _body() -> str:
    return json.dumps(document(), separators=(",", ":"))


@bp.get("/openapi.json")
def openapi() -> Response:
    """GET /openapi.json: docs/openapi.yaml as JSON."""
    return Response(_body(), mimetype="application/json", headers={"Cache-Control": "no-cache"})
