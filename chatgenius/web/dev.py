"""AUTH_MODE=dev only: the app's own JWKS and a token mint for the demo and tests."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from ..auth import encodable
from ..errors import ServiceError
from ..events import valid_channel
from .common import json_body, realtime

bp = Blueprint("dev", __name__)


@bp.get("/.well-known/jwks.json")
def jwks() -> Response:
    """GET /.well-known/jwks.json: the dev issuer's public key (AUTH_MODE=dev only)."""
    dev = realtime().dev
    if dev is None:
        raise ServiceError(404, "not_found", "no JWKS here outside AUTH_MODE=dev")
    return jsonify(dev.jwks())


@bp.post("/dev/token")
def token() -> Response:
    """POST /dev/token: mint a token (AUTH_MODE=dev only, loopback binds only)."""
    dev = realtime().dev
    if dev is None:
        raise ServiceError(404, "not_found", "dev tokens exist only in AUTH_MODE=dev")
    body = json_body()
    if not isinstance(body, dict):
        raise ServiceError(400, "bad_request", "send {\"sub\", \"channels\", \"permissions\", \"ttl\"}")
    sub = body.get("sub")
    channels = body.get("channels", [])
    permissions = body.get("permissions", [])
    ttl = body.get("ttl", 3600)
    if not isinstance(sub, str) or not 0 < len(sub) <= 120 or any(c in sub for c in "\r\n\x00") or not encodable(sub):
        raise ServiceError(400, "bad_request", "sub must be a non-empty string of at most 120 characters")
    if not isinstance(channels, list) or not all(isinstance(c, str) and len(c) <= 140 for c in channels):
        raise ServiceError(400, "bad_request", "channels must be a list of channel names or patterns")
    if not all(valid_channel(c.replace("*", "x")) for c in channels):
        raise ServiceError(400, "bad_request", "channels holds an invalid channel pattern")
    if not isinstance(permissions, list) or not all(isinstance(p, str) and encodable(p) for p in permissions):
        raise ServiceError(400, "bad_request", "permissions must be a list of strings")
    if not isinstance(ttl, int) or isinstance(ttl, bool) or not 1 <= ttl <= 86400:
        raise ServiceError(400, "bad_request", "ttl must be an integer between 1 and 86400 seconds")
    return jsonify({"token": dev.mint(sub, channels, permissions, ttl), "expires_in": ttl})
