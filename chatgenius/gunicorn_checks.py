"""The safety checks judge what gunicorn really does: its effective bind and worker count.

gunicorn.conf.py takes BIND and WEB_CONCURRENCY only as defaults: `-b`,
`--workers` and GUNICORN_CMD_ARGS override them, and systemd may hand over
sockets bound elsewhere. So the master judges gunicorn's own settings
(`server.cfg`) before it binds anything, writes them back into the
environment every worker's `config.load()` reads, checks the sockets it
actually bound before the first worker forks, and keeps a TTIN from taking
the in-memory bus past one process. A refusal is one `config error:` line; a
risky but legal choice (trusted proxies on a public socket) a `config.warning`.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping, MutableMapping
from typing import Any

from . import compiled, config, log


def effective_env(cfg: Any, env: Mapping[str, str]) -> dict[str, str]:
    """`env` with BIND and WEB_CONCURRENCY as gunicorn resolved them (command line over config file)."""
    return {**env, "BIND": ",".join(cfg.bind), "WEB_CONCURRENCY": str(cfg.workers)}


def adopt(cfg: Any, environ: MutableMapping[str, str]) -> config.Settings:
    """Check the settings gunicorn will serve with, then hand them to the workers (on_starting, on_reload).

    Raises ConfigError before anything is bound when they are refused.
    """
    env = effective_env(cfg, environ)
    settings = config.load(env)
    environ["BIND"], environ["WEB_CONCURRENCY"] = env["BIND"], env["WEB_CONCURRENCY"]
    for warning in config.exposure_warnings(settings):
        log.event("config.warning", logging.WARNING, warning=warning)
    stale = [name for name, state in compiled.status().items() if state in ("stale", "orphan")]
    if stale:  # each would run an old build, not its source
        log.event("config.warning", logging.WARNING, warning="compiled modules not built from their source as it is (make compiled)",
                  modules=stale)
    return settings


def listener_host(sock: socket.socket) -> str | None:
    """The address a listening socket is bound to; None for a unix socket."""
    if sock.family == socket.AF_UNIX:
        return None
    return str(sock.getsockname()[0])


def check_listeners(settings: config.Settings, listeners: list[Any]) -> None:
    """Dev mode serves loopback only: judged on the sockets bound (inherited ones too), not on BIND."""
    if settings.auth_mode != "dev":
        return
    for listener in listeners:
        host = listener_host(listener.sock)
        if host is not None and not config.is_loopback_host(host):
            raise config.ConfigError(
                f"AUTH_MODE: dev mode mints its own tokens and is refused on a non-loopback socket, got {host!r}"
            )


def refuse_more_workers(environ: Mapping[str, str], new: int, old: int | None) -> bool:
    """True when a change of worker count (TTIN) would run the in-memory bus in several processes."""
    if old is None or new <= 1 or new <= old:
        return False  # fewer (or as many, a reload): never refused, so an undo cannot be refused in turn
    # The same stores config.load accepts for several workers: a reload (HUP) passes here too.
    return not (environ.get("REDIS_URL") or environ.get("REDIS_SENTINELS") or environ.get("REDIS_CLUSTER_NODES"))


def workers_changed(server: Any, new: int, old: int | None) -> None:
    """nworkers_changed: undo a TTIN past one worker on the in-memory bus (it would split the bus)."""
    if refuse_more_workers(os.environ, new, old):
        log.event(
            "config.refused", logging.ERROR,
            error="REDIS_URL: required with more than one worker process; the in-memory bus is one process only",
            workers=new,
        )
        server.num_workers = old
