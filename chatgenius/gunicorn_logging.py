"""gunicorn's logger, minus the access-log work nobody reads.

gunicorn formats an access line's atoms for every request whenever any logging
config is set, and gunicorn.conf.py sets `logconfig_dict` (JSON logs), so each
`POST /events` paid for a dict of atoms that was then dropped. This logger does
that work only when an access log was asked for (`--access-logfile`).
"""

from __future__ import annotations

from typing import Any

from gunicorn import glogging


class Logger(glogging.Logger):
    """gunicorn's logger, quiet about access lines unless an access log is configured."""

    def access(self, resp: Any, req: Any, environ: dict, request_time: Any) -> None:
        """Format an access line only when there is an access log to write it to (a cost per request)."""
        if self.cfg.accesslog:
            super().access(resp, req, environ, request_time)
