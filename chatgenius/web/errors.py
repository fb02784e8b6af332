"""Every failure becomes `{"error", "message"}` JSON with the right status."""

from __future__ import annotations

import logging

from flask import Blueprint, Response, jsonify
from werkzeug.exceptions import HTTPException

from .. import log
from ..errors import ServiceError

bp = Blueprint("errors", __name__)


def error_response(status: int, body: dict, headers: dict | None = None) -> Response:
    """A JSON error answer with `status` and `headers`."""
    resp = jsonify(body)
    resp.status_code = status
    for key, value in (headers or {}).items():
        resp.headers[key] = value
    return resp


@bp.app_errorhandler(ServiceError)
def service_error(exc: ServiceError) -> Response:
    """A ServiceError raised anywhere below a view becomes its JSON error."""
    return error_response(exc.status, exc.body(), exc.headers)


@bp.app_errorhandler(HTTPException)
def http_error(exc: HTTPException) -> Response:
    """Flask/werkzeug's HTTP errors (404, 405...) answered as JSON like ours."""
    code = (exc.name or "error").lower().replace(" ", "_")
    headers = dict(exc.get_headers())
    headers.pop("Content-Type", None)
    return error_response(exc.code or 500, {"error": code, "message": exc.description or exc.name}, headers)


@bp.app_errorhandler(Exception)
def unexpected(exc: Exception) -> Response:
    """A bug: logged with its traceback, answered 500 without details."""
    log.event("error", logging.ERROR, error=repr(exc), exc_info=exc)
    return error_response(500, {"error": "internal", "message": "internal error; it has been logged"})
