"""The embedded server: the whole service in one process on gevent's WSGI server.

`python app.py` and `chatgenius-realtime serve` run it: the in-memory bus
(unless REDIS_URL is set), dev authentication and 127.0.0.1:8000 by default.
It is for a laptop and for trying the service; production runs gunicorn.
The caller has applied gevent's monkey patching before importing this.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
from collections.abc import Mapping

import gevent
from gevent.pool import Pool
from gevent.pywsgi import WSGIServer

from . import config
from .factory import create_app

DEFAULTS = {"AUTH_MODE": "dev", "BIND": "127.0.0.1:8000"}
# Connections served at once (streams included): what a laptop's default 1024 open files allow.
CONNECTIONS = 1000


def settings_for(env: Mapping[str, str], tty: bool) -> config.Settings:
    """The embedded defaults under the environment's values; logs for a human when stdout is a terminal."""
    merged = {**DEFAULTS, **env}
    if not merged.get("LOG_FORMAT"):
        merged["LOG_FORMAT"] = "text" if tty else "json"
    return config.load(merged, workers=1)  # one process, whatever WEB_CONCURRENCY says (it is gunicorn's)


def listen(bind: str) -> socket.socket:
    """The listening socket for `host:port`; OSError (port taken, bad host) before anything is printed."""
    host, _, port = bind.rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit():
        raise OSError(f"BIND must be host:port, got {bind!r}")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, int(port)), family=family, backlog=1024)


def serve(env: Mapping[str, str] | None = None) -> int:
    """Serve until SIGINT or SIGTERM; the exit status (non-zero with one line on stderr when it cannot start)."""
    try:
        settings = settings_for(os.environ if env is None else env, sys.stdout.isatty())
    except config.ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    try:
        listener = listen(settings.bind)
    except OSError as exc:
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        print(f"cannot listen on {settings.bind}: {reason} (set BIND to another host:port)", file=sys.stderr)
        return 1
    app = create_app(settings)
    for warning in config.exposure_warnings(settings):
        print(f"warning: {warning}", flush=True)
    app.extensions["chatgenius.telemetry"].set_capacity(CONNECTIONS)  # gunicorn's post_worker_init does it there
    server = WSGIServer(listener, app, log=None, spawn=Pool(CONNECTIONS))
    for sig in (signal.SIGINT, signal.SIGTERM):
        gevent.signal_handler(sig, server.stop, 1)  # open streams get a second, then are cut
    bus = "redis" if settings.redis_url or settings.redis_sentinels or settings.redis_cluster_nodes else "memory"
    print(f"ChatGenius realtime: http://{settings.bind}/ (bus: {bus}, auth: {settings.auth_mode}; "
          f"admin page: http://{settings.bind}/admin; Ctrl-C stops)", flush=True)
    server.serve_forever()
    return 0
