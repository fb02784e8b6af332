"""gunicorn settings for the realtime service (gevent workers, thousands of streams each)."""

import os

# Set in the environment so every worker's config.load() sees the same values.
bind = os.environ.setdefault("BIND", "0.0.0.0:8000")
workers = int(os.environ.setdefault("WEB_CONCURRENCY", "2"))
worker_class = "gevent"
worker_connections = int(os.environ.get("WORKER_CONNECTIONS", "20000"))
backlog = 4096
# Streams are long-lived: the timeout is the worker heartbeat to the master, not a request limit.
timeout = 30
# Longer than the drain (streams are told to reconnect over a few seconds, then end).
graceful_timeout = int(os.environ.get("GRACEFUL_TIMEOUT", "20"))
keepalive = 5
# One control socket per host path would collide between instances (tests, several hosts on one box).
control_socket_disable = True
accesslog = None
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info").lower()
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "chatgenius.log.JsonFormatter"}},
    "handlers": {"stdout": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stdout"}},
    "root": {"handlers": ["stdout"], "level": loglevel.upper()},
    "loggers": {
        "gunicorn.error": {"handlers": [], "propagate": True, "level": loglevel.upper()},
        "gunicorn.access": {"handlers": [], "propagate": True, "level": loglevel.upper()},
    },
}


def on_starting(server):
    """Check the configuration once in the master: a bad value stops start-up with one line."""
    from chatgenius import config

    try:
        config.load()
    except config.ConfigError as exc:
        raise SystemExit(f"config error: {exc}") from None


def post_worker_init(worker):
    """Give the service its worker number and start watching for shutdown (drain)."""
    from chatgenius.drain import watch

    watch(worker)
