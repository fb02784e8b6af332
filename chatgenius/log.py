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
import sys
import time
from typing import Any

_SECRET = re.compile(r"(eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*|((?:ticket|token|access_token)=)[^&\s\"']+)")
_STD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}
logger = logging.getLogger("chatgenius")


def redact(text: str) -> str:
    return _SECRET.sub(lambda m: (m.group(2) or "") + "[redacted]", text)


class JsonFormatter(logging.Formatter):
    """Render a record as one JSON line: ts, level, event, message, then structured fields."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "event": getattr(record, "event", None) or "log",
            "logger": record.name,
            "pid": record.process,
        }
        message = record.getMessage()
        if message:
            out["message"] = redact(message)
        for key, value in vars(record).items():
            if key not in _STD and key != "event":
                out[key] = redact(value) if isinstance(value, str) else value
        if record.exc_info:
            out["error"] = redact(self.formatException(record.exc_info))
        return json.dumps(out, default=str, separators=(",", ":"))


def setup(level: str = "INFO") -> None:
    """Route every logger (ours, gunicorn's, libraries') through the JSON formatter."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("gunicorn.error", "gunicorn.access"):
        lg = logging.getLogger(name)
        lg.handlers[:] = []
        lg.propagate = True


def event(name: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log one structured event (contract: Operators, Logs)."""
    if logger.isEnabledFor(level):
        logger.log(level, "", extra={"event": name, **fields})


def now() -> float:
    return time.time()
