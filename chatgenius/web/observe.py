"""Per-request observability: a request id on the response and the request's log lines; refusals counted.

`X-Request-ID` from the client (or nginx) is honoured when it is a sane token,
else one is made; it is echoed in the response and bound to every log line of
the request, including the lines a stream writes after its view returned (the
stream's session carries the id to `connection.close`; stream.serve binds it). Every error
answer is counted as a rejection (by reason) or an error (by kind), and a
refused `/stream` is logged as `connection.reject`.
"""

from __future__ import annotations

import re

from flask import Blueprint, Response, current_app, g, request

from .. import log
from ..stream import StreamBody
from ..telemetry import Telemetry

bp = Blueprint("observe", __name__)

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:@+=/-]{1,128}$")


def telemetry() -> Telemetry:
    """This app's Telemetry."""
    return current_app.extensions["chatgenius.telemetry"]


def valid_request_id(raw: str) -> bool:
    """A client's X-Request-ID is kept when it is a sane token (it goes into every log line)."""
    return _REQUEST_ID.fullmatch(raw) is not None


def _request_id() -> str:
    rid = g.get("request_id")
    if rid is None:
        raw = request.headers.get("X-Request-ID", "")
        rid = g.request_id = raw if valid_request_id(raw) else log.new_request_id()
    return rid


@bp.before_app_request
def bind_request_id() -> None:
    """Bind the request id to the log context for the request's lines."""
    log.request_id.set(_request_id())


@bp.after_app_request
def account(response: Response) -> Response:
    """Echo X-Request-ID, count a refusal by its code and log it."""
    rid = _request_id()
    response.headers["X-Request-ID"] = rid
    if response.status_code >= 400:
        body = response.get_json(silent=True) if response.is_json else None
        body = body if isinstance(body, dict) else {}
        code = str(body.get("error", ""))
        reason = telemetry().refused(response.status_code, code, str(body.get("reason", "")))
        # The connection limit is logged by the service itself, with the user's count.
        if request.path == "/stream" and code != "connection_limit":
            who = g.get("identity")
            log.event(
                "connection.reject", status=response.status_code, reason=reason, error=code,
                user_id=who.sub if who is not None else None,
            )
    body = response.response
    if isinstance(body, StreamBody):
        body.session.request_id = rid
        body.session.on_error = telemetry().stream_failed
    return response


@bp.teardown_app_request
def unbind_request_id(exc: BaseException | None) -> None:
    """Clear the request id so a later line on this greenlet does not carry it."""
    log.request_id.set(None)
