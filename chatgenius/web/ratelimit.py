"""Per-user request rate limits (flask-limiter), counted across every worker and host.

Which limit applies is decided by the route (`RULES`; an authenticated
`POST /events` is counted by the bus inside the publish, see
Realtime.publish): RATE_LIMIT_CONNECT for
opening streams and getting tickets, RATE_LIMIT_PUBLISH for /events, /typing
and /subscriptions, RATE_LIMIT_POLL for /poll and /presence/<channel>; each
endpoint counts on its own. The key
is the verified JWT `sub` (the identity is verified once per request and
cached, so the view reuses it); a request whose credential fails is counted
by client address instead, so a flood of bad tokens is cut off without
touching real users. Preflights (OPTIONS) are never counted.

Storage is the deployment's Redis, through the bus' own connection pool (no
extra connections), or memory:// for the in-process default. When Redis is
unreachable the limiter fails open, logging `ratelimit.unavailable` at most
every 10 s: the bus is down too, so /stream, /poll and /events answer 503
anyway, and refusing with 429 would only send clients into a retry storm.
"""

from __future__ import annotations

import logging
import math
import time

from flask import Flask, Response, request
from flask_limiter import Limit, Limiter, RateLimitExceeded
from limits.storage import RedisClusterStorage

from .. import log
from ..config import Settings
from ..errors import ServiceError
from .common import identity
from .errors import error_response

# URL rule -> Settings attribute holding its limit.
RULES = {
    "/stream": "rate_limit_connect",
    "/tickets": "rate_limit_connect",
    "/events": "rate_limit_publish",
    "/typing": "rate_limit_publish",
    # Each change is a message to every worker of every host: bounded per user like a publish.
    "/subscriptions": "rate_limit_publish",
    "/poll": "rate_limit_poll",
    "/presence/<channel>": "rate_limit_poll",
}
KEY_PREFIX = "cg:rl"


def caller_key() -> str:
    """The verified user, or the client address when no valid credential came with the request."""
    try:
        return "user:" + identity().sub
    except ServiceError:
        return "ip:" + (request.remote_addr or "unknown")


def install(app: Flask, settings: Settings, storage: tuple[str, dict[str, object]]) -> Limiter:
    """Build the limiter over the backend family's storage (`storage`: URI and options, backends.py), and register it."""
    limits = {rule: getattr(settings, attr) for rule, attr in RULES.items()}

    def route_limit() -> str:
        rule = request.url_rule
        return limits.get(rule.rule, "") if rule is not None else ""

    storage_uri, options = storage
    if storage_uri != "memory://":
        options = {**options, "key_prefix": KEY_PREFIX}

    def counted_by_the_bus() -> bool:
        # An authenticated POST /events is counted inside the publish itself (Realtime.publish:
        # one Redis round trip, not two); a bad credential there is still counted here, by address.
        rule = request.url_rule
        return rule is not None and rule.rule == "/events" and caller_key().startswith("user:")

    limiter = Limiter(
        caller_key,
        default_limits=[Limit(route_limit, error_message="too many requests; slow down", exempt_when=counted_by_the_bus)],
        storage_uri=storage_uri,
        storage_options=options,
        strategy="fixed-window",
        headers_enabled=False,
        swallow_errors=True,
    )
    limiter.request_filter(lambda: request.method == "OPTIONS")
    limiter.init_app(app)
    _quiet_storage_errors()

    def rate_limited(exc: RateLimitExceeded) -> Response:
        retry_after = 1
        current = limiter.current_limit
        if current is not None:
            try:
                reset = current.window[0]  # when the window resets (reset_at adds a second)
                retry_after = max(1, min(current.limit.get_expiry(), math.ceil(reset - time.time())))
            except Exception:  # the storage went away between the hit and this read
                retry_after = 1
        log.event("request.reject", logging.INFO, reason="rate_limited", path=request.path, limit=str(exc.limit.limit))
        body = {"error": "rate_limited", "message": f"rate limit exceeded: {exc.limit.limit}", "retry_after": retry_after}
        return error_response(429, body, {"Retry-After": str(retry_after)})

    app.register_error_handler(RateLimitExceeded, rate_limited)
    return limiter


def close(limiter: Limiter) -> None:
    """Release the limiter's own Redis Cluster client (chatgenius.close); one Redis' storage rides the
    family's pool, which the bus closes, and memory holds no connection."""
    storage = limiter.storage
    if isinstance(storage, RedisClusterStorage):
        storage.storage.close()


class _FailOpenLog(logging.Filter):
    """Turn flask-limiter's per-request storage tracebacks into one `ratelimit.unavailable` line per 10 s."""

    def __init__(self) -> None:
        super().__init__()
        self._last = float("-inf")

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info is None:
            return True
        now = time.monotonic()
        if now - self._last < 10:
            return False
        self._last = now
        exc = record.exc_info[1]
        record.exc_info = None
        record.msg, record.args = "rate-limit storage unreachable: failing open", ()
        record.event = "ratelimit.unavailable"
        record.error = repr(exc)
        return True


def _quiet_storage_errors() -> None:
    logger = logging.getLogger("flask-limiter")
    if not any(isinstance(f, _FailOpenLog) for f in logger.filters):
        logger.addFilter(_FailOpenLog())
