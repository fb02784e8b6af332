"""Only the HTTP methods the service speaks get past this point (and into the request metrics).

The exporter labels every request with its method: left alone, each made-up
method name (`curl -X QAAA /healthz`) would add a family of series, unbounded
and unauthenticated. So an unknown method is a 405 before anything else runs,
and the exporter is told not to count it. deploy/nginx.conf refuses the same
methods at the edge.
"""

from __future__ import annotations

from flask import Flask, request

from ..errors import ServiceError

KNOWN = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS"})
ALLOW = ", ".join(sorted(KNOWN))


def install(app: Flask) -> None:
    """Register the check; call it before the exporter and every other before-request hook."""
    app.before_request_funcs.setdefault(None, []).insert(0, refuse_unknown)


def refuse_unknown() -> None:
    """405 for a method no route has (e.g. PROPFIND), before routing and untracked by the exporter."""
    if request.method not in KNOWN:
        request.prom_do_not_track = True  # type: ignore[attr-defined]  # prometheus_flask_exporter's opt-out
        raise ServiceError(405, "method_not_allowed", f"{request.method[:20]} is not a method of this service", headers={"Allow": ALLOW})
