"""gunicorn settings for the realtime service (gevent workers, thousands of streams each)."""

import os
import shutil
import sys
import tempfile

# The checks below import the package from beside this file, whatever the working directory.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

# Underscored: gunicorn reads every public name of this file as a setting (`config` is one).
import chatgenius.config as _config
import chatgenius.gunicorn_checks as _checks

# Defaults only: -b/--workers (and GUNICORN_CMD_ARGS) win; on_starting judges and passes on what gunicorn resolved.
bind = [b.strip() for b in os.environ.get("BIND", "0.0.0.0:8000").split(",") if b.strip()]
try:
    workers = _config.workers_default(os.environ)
    # Checked here: gunicorn configures its loggers from this file, before any hook could name the variable.
    loglevel = _config.log_level(os.environ).lower()
except _config.ConfigError as exc:
    raise SystemExit(f"config error: {exc}") from None
# Every worker writes its metrics here and /metrics sums them (prometheus_client multiprocess
# mode); it must be in the environment before a worker imports prometheus_client. Unset: a
# private directory per master, removed at exit, so two instances on one host never mix.
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="chatgenius-metrics-")
    os.environ["CHATGENIUS_METRICS_DIR_OWNED"] = "1"
worker_class = "chatgenius.gunicorn_worker.PublishWorker"  # gevent's, with a lean path for the usual publish
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
logger_class = "chatgenius.gunicorn_logging.Logger"  # no access-line formatting unless accesslog is set
errorlog = "-"
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
    """Check the configuration once in the master, with gunicorn's effective bind and worker count,
    before anything is bound: a bad value stops start-up with one line."""
    try:
        _checks.adopt(server.cfg, os.environ)
    except _config.ConfigError as exc:
        raise SystemExit(f"config error: {exc}") from None
    _reset_metrics_dir(os.environ["PROMETHEUS_MULTIPROC_DIR"])


def when_ready(server):
    """The sockets really bound (systemd's too) are judged before the first worker forks."""
    try:
        _checks.check_listeners(_config.load(), server.LISTENERS)
    except _config.ConfigError as exc:
        on_exit(server)
        raise SystemExit(f"config error: {exc}") from None


def on_reload(server):
    """A reload re-reads the command line and this file: judge the result again."""
    try:
        _checks.check_listeners(_checks.adopt(server.cfg, os.environ), server.LISTENERS)
    except _config.ConfigError as exc:
        server.log.error("config error: %s", exc)
        server.halt(reason=f"config error: {exc}", exit_status=1)


def nworkers_changed(server, new_value, old_value):
    """TTIN cannot take the in-memory bus past one process."""
    _checks.workers_changed(server, new_value, old_value)


def _reset_metrics_dir(path):
    """Start with no metric files: a previous run's (dead pids) would be summed into ours forever."""
    os.makedirs(path, exist_ok=True)
    for name in os.listdir(path):
        if name.endswith(".db"):
            os.remove(os.path.join(path, name))


def child_exit(server, worker):
    """A dead worker's live gauges (connections, users, memory) leave /metrics now; its counters stay."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    """Remove the metrics directory this master made for itself (never one an operator configured)."""
    if os.environ.get("CHATGENIUS_METRICS_DIR_OWNED") == "1":
        shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)


def worker_exit(server, worker):
    """In the worker: wait for detached streams to drain (chatgenius/drain.py finish)."""
    from chatgenius.drain import finish

    finish(worker)


def post_worker_init(worker):
    """Give the service its worker number and start watching for shutdown (drain)."""
    from chatgenius import heap
    from chatgenius.drain import watch

    watch(worker)
    worker.wsgi.extensions["chatgenius.telemetry"].set_capacity(worker.cfg.worker_connections)
    # Everything loaded so far (modules, the app) lives as long as the worker: keep it out of
    # the collector's full passes. Those passes stopped a loaded worker for 40-80 ms at a time,
    # which showed up as the fan-out's p99 (docs/PERFORMANCE.md). heap.freeze() also remembers the
    # greenlets alive now, which gc.get_objects() stops listing, so the greenlet gauge still counts them.
    heap.freeze()
