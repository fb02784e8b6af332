"""Glue every blueprint shares: the service object, the caller's identity, JSON in and out."""

from __future__ import annotations

from flask import current_app, g, request

from ..auth import Identity
from ..errors import ServiceError
from ..service import Realtime


def realtime() -> Realtime:
    return current_app.extensions["chatgenius"]


def identity() -> Identity:
    """The verified caller, verified once per request (rate-limit keys ask first)."""
    cached = g.get("identity")
    if cached is None:
        cached = g.identity = realtime().identify(request.headers.get("Authorization"))
    return cached


def json_body() -> object:
    """The request's JSON, or a 400/415 that says what was wrong."""
    if not request.is_json:
        raise ServiceError(415, "unsupported_media_type", "send Content-Type: application/json")
    data = request.get_json(silent=True)
    if data is None:
        raise ServiceError(400, "bad_json", "the body is not valid JSON")
    return data
