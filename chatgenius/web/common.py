"""Glue every blueprint shares: the service object, the caller's identity, JSON in and out."""

from __future__ import annotations

import logging

from flask import current_app, g, request

from .. import log
from ..auth import Identity
from ..errors import ServiceError
from ..service import Realtime, unauthorized


def realtime() -> Realtime:
    """This app's Realtime service (in app.extensions, per the Flask extension pattern)."""
    return current_app.extensions["chatgenius"]


def identity() -> Identity:
    """The verified caller, verified once per request (rate-limit keys ask first); a refusal is kept too."""
    cached = g.get("identity")
    if cached is None:
        refused = g.get("identity_error")
        if refused is not None:
            raise refused
        try:
            cached = g.identity = _verify()
        except ServiceError as exc:
            g.identity_error = exc
            raise
    return cached


def require_admin() -> None:
    """401 without a valid token, 403 (logged with the caller) without the admin:sse permission."""
    who = identity()
    if not who.is_admin:
        log.event("admin.forbidden", logging.WARNING, user_id=who.sub)
        raise ServiceError(403, "forbidden", "admin endpoints need the admin:sse permission")


# A JWT in a URL leaks into proxy logs, browser history and Referer headers (contract, Identity).
TOKEN_PARAMS = ("access_token", "token", "id_token", "jwt")
TICKET_ENDPOINTS = frozenset({"stream.stream"})


def _verify() -> Identity:
    rt = realtime()
    leaked = [name for name in TOKEN_PARAMS if name in request.args]
    if leaked:
        log.event("auth.fail", logging.WARNING, reason="token_in_query", error=f"{leaked[0]}= in the query string")
        raise ServiceError(
            400, "token_in_query",
            f"a token is never accepted in the query string ({leaked[0]}=); send Authorization: Bearer, "
            "or on /stream a ?ticket= from POST /tickets",
        )
    authorization = request.headers.get("Authorization")
    ticket = request.args.get("ticket")
    if ticket is not None and authorization is None:
        if request.endpoint not in TICKET_ENDPOINTS:
            raise unauthorized("missing", "tickets are accepted on GET /stream only; send Authorization: Bearer")
        return rt.redeem_ticket(ticket)
    return rt.identify(authorization)


def json_body() -> object:
    """The request's JSON, or a 400 that says what was wrong."""
    if not request.is_json:
        raise ServiceError(400, "bad_json", "send a JSON body with Content-Type: application/json")
    try:
        data = request.get_json(silent=True)
    except RecursionError:  # json raises this, not ValueError, for thousands of nested brackets
        raise ServiceError(400, "bad_json", "the body is nested too deeply") from None
    if data is None:
        raise ServiceError(400, "bad_json", "the body is not valid JSON")
    return data
