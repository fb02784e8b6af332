"""JSON logs: one object a line on stdout, with the contract's fields.

`event(...)` is the one way the service logs something that happened
(connection.open, auth.fail, ...). Values that look like credentials are
redacted by the formatter as a last line of defence, on top of never passing
them in the first place.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import sys
import time
from contextvars import ContextVar
from typing import Any

from .unique import UniqueNames

_SECRET = re.compile(
    r"(?P<jwt>eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*)"
    r"|(?P<key>\b(?:ticket|token|access_token|id_token|refresh_token)=)[^&\s\"']+"
    r"|(?P<scheme>\b[Bb]earer\s+)[^\s\"',;]+"
)
# Fields whose value is a credential whatever it looks like (a ticket is an opaque string).
_SECRET_KEYS = frozenset({"token", "ticket", "authorization", "access_token", "id_token", "refresh_token", "password", "secret", "cookie"})
_STD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}
logger = logging.getLogger("chatgenius")
# The id of the request being served (web/observe.py binds it); greenlet-local, since each
# greenlet runs in its own contextvars context.
request_id: ContextVar[str | None] = ContextVar("request_id", default=None)


# Request ids: 32 hex digits, a random half per process and a counter (unique.py: no getrandom(2)
# per request as uuid4 would make; a request id only has to correlate log lines, it is no secret).
new_request_id = UniqueNames(lambda: secrets.token_hex(8), 1 << 32, lambda prefix, n: f"{prefix}{n:016x}")


def redact(text: str) -> str:
    """`text` with bearer tokens, tickets and secrets replaced by `[redacted]`: log lines never carry credentials."""
    return _SECRET.sub(lambda m: (m.group("key") or m.group("scheme") or "") + "[redacted]", text)


def scrub(key: str, value: Any) -> Any:
    """`value` safe to log under `key`: credentials by name or by shape redacted, nested values too."""
    if key.lower() in _SECRET_KEYS and value:
        return "[redacted]"
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: scrub(str(k), v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [scrub("", v) for v in value]
    return value


class JsonFormatter(logging.Formatter):
    """Render a record as one JSON line: ts, level, event, message, then structured fields."""

    def format(self, record: logging.LogRecord) -> str:
        """One JSON object per line: ts, level, event, logger, pid, request id, then the event's fields."""
        out: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "event": getattr(record, "event", None) or "log",
            "logger": record.name,
            "pid": record.process,
        }
        rid = request_id.get()
        if rid is not None:
            out["request_id"] = rid
        message = record.getMessage()
        if message:
            out["message"] = redact(message)
        for key, value in vars(record).items():
            if key not in _STD and key != "event":
                out[key] = scrub(key, value)
        if record.exc_info:
            out["error"] = redact(self.formatException(record.exc_info))
        return json.dumps(out, default=str, separators=(",", ":"))


class TextFormatter(JsonFormatter):
    """The same record for a person at a terminal: `12:00:01 info  connection.open user_id=alice ...`.

    Built from the JSON formatter's output, so it redacts exactly what the JSON lines redact.
    """

    _HEAD = ("ts", "level", "event", "logger", "pid", "message", "error")

    def format(self, record: logging.LogRecord) -> str:
        """The JSON line's fields as `time level event message key=value...`, for a terminal."""
        out = json.loads(super().format(record))
        clock = time.strftime("%H:%M:%S", time.localtime(out["ts"]))
        parts = [clock, f"{out['level']:<7}", out["event"]]
        if out.get("message"):
            parts.append(out["message"])
        error = out.get("error")
        if error and "\n" not in error:
            parts.append(f"error={error}")
        parts += [f"{k}={v if isinstance(v, str) else json.dumps(v, default=str)}"
                  for k, v in out.items() if k not in self._HEAD and v is not None]
        line = " ".join(parts)
        return line + ("\n" + error if error and "\n" in error else "")


def setup(level: str = "INFO", fmt: str = "json") -> None:
    """Route every logger (ours, gunicorn's, libraries') through one formatter: JSON, or text for a terminal."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(TextFormatter() if fmt == "text" else JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("gunicorn.error", "gunicorn.access"):
        lg = logging.getLogger(name)
        lg.handlers[:] = []
        lg.propagate = True


def event(name: str, level: int = logging.INFO, /, exc_info: BaseException | None = None, **fields: Any) -> None:
    """Log one structured event (contract: Operators, Logs); `exc_info` adds the traceback as `error`."""
    if logger.isEnabledFor(level):
        # A field named like a LogRecord attribute would make logging raise: keep it, renamed.
        extra = {(k + "_" if k in _STD else k): v for k, v in fields.items()}
        extra["event"] = name
        logger.log(level, "", exc_info=exc_info, extra=extra)
