"""Run the real gunicorn master + workers the way production does, for end-to-end tests.

The process gets the same config file and the environment contract our
gunicorn.conf.py reads (BIND, WEB_CONCURRENCY, PROMETHEUS_MULTIPROC_DIR), so
signals (HUP, TERM, a SIGKILLed worker) are exercised on the genuine master.
Output goes to a log file that tests can read and parse as JSON lines.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import psutil

from .procs import REPO_ROOT, Managed, free_port, live_children, spawn, tail, terminate_tree, wait_until


def find_gunicorn() -> str:
    """The repo venv's gunicorn, else the one beside this interpreter, else PATH."""
    for path in (REPO_ROOT / ".venv/bin/gunicorn", Path(sys.executable).parent / "gunicorn"):
        if os.access(path, os.X_OK):
            return str(path)
    return shutil.which("gunicorn") or "gunicorn"


def http_status(port: int, path: str, timeout: float = 1.0) -> int:
    """Status of GET http://127.0.0.1:port/path (raises OSError if nothing answers)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


class Gunicorn(Managed):
    """`gunicorn -c <config> <app_module>` in `cwd` (default: the repo root and `wsgi:app`).

    `config=None` runs without a config file and passes `--bind`/`--workers`
    on the command line instead. PYTHONUNBUFFERED=1 is added (overridable) so
    log lines reach the file as they happen.
    """

    def __init__(
        self,
        *,
        workers: int = 1,
        port: int | None = None,
        env: Mapping[str, str] | None = None,
        app_module: str = "wsgi:app",
        cwd: Path | None = None,
        config: str | None = "gunicorn.conf.py",
        args: Sequence[str] = (),
        workdir: Path | None = None,
        health_path: str = "/healthz",
        startup_timeout: float = 20.0,
        binary: str | None = None,
    ) -> None:
        self.workers = workers
        self.port = port or free_port()
        self.cwd = Path(cwd) if cwd else REPO_ROOT
        self.health_path = health_path
        self.startup_timeout = startup_timeout
        self._owns_dir = workdir is None
        self.dir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="gunicorn-"))
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.dir / "gunicorn.log"
        self.prometheus_dir = Path(tempfile.mkdtemp(prefix="prom-", dir=self.dir))
        self.env = {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "BIND": f"127.0.0.1:{self.port}",
            "WEB_CONCURRENCY": str(workers),
            "PROMETHEUS_MULTIPROC_DIR": str(self.prometheus_dir),
            **(env or {}),
        }
        self.argv = [binary or find_gunicorn()]
        if config is None:
            self.argv += ["--bind", self.env["BIND"], "--workers", str(workers)]
        else:
            self.argv += ["-c", config]
        self.argv += [*args, app_module]
        self._proc: subprocess.Popen[bytes] | None = None
        self._seen: dict[int, psutil.Process] = {}

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def master_pid(self) -> int:
        if self._proc is None:
            raise RuntimeError("gunicorn is not started")
        return self._proc.pid

    @property
    def returncode(self) -> int | None:
        """The master's exit status once it has exited (None while running)."""
        return None if self._proc is None else self._proc.poll()

    def worker_pids(self) -> list[int]:
        """Live worker pids (children of the master), sorted."""
        if self._proc is None:
            return []
        children = live_children(self._proc.pid)
        self._seen.update((c.pid, c) for c in children)
        return sorted(c.pid for c in children)

    def processes_seen(self) -> list[psutil.Process]:
        """The master and every worker observed so far, for leak assertions after stop()."""
        self.worker_pids()
        master = [psutil.Process(self._proc.pid)] if self.returncode is None and self._proc else []
        return master + list(self._seen.values())

    # -- lifecycle ---------------------------------------------------------
    def start(self) -> Gunicorn:
        """Spawn the master; return when the health check answers 200 and all workers exist."""
        if self._proc is not None and self._proc.poll() is None:
            return self  # already running: a second master would lose track of the first
        self._proc = spawn(self.argv, self.log_path, self.cwd, self.env)
        proc = self._proc

        def ready() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {proc.returncode}")
            if http_status(self.port, self.health_path) != 200:
                return False
            return len(self.worker_pids()) >= self.workers

        try:
            wait_until(
                ready,
                self.startup_timeout,
                0.1,
                f"gunicorn {self.health_path} 200 with {self.workers} workers",
                ignore=(OSError, http.client.HTTPException),
            )
        except (AssertionError, RuntimeError) as exc:
            self.stop(timeout=5)
            raise AssertionError(f"{exc}\n--- {self.log_path} ---\n{tail(self.log_path)}") from None
        return self

    def hup(self, wait: bool = True, timeout: float = 20.0) -> set[int]:
        """SIGHUP (graceful reload); return the old worker pids.

        With `wait`, block until `workers` new worker pids exist; the old ones
        may still be draining, tests can wait for them with psutil.
        """
        old = set(self.worker_pids())
        os.kill(self.master_pid, signal.SIGHUP)
        if wait:
            wait_until(lambda: len(set(self.worker_pids()) - old) >= self.workers, timeout, 0.1, "new workers after HUP")
        return old

    def term(self) -> None:
        """SIGTERM to the master without waiting (graceful shutdown under test)."""
        self.worker_pids()  # remember the workers in case the master dies first
        os.kill(self.master_pid, signal.SIGTERM)

    def kill_worker(self, pid: int) -> None:
        """SIGKILL one of *our* workers (refuses other pids)."""
        if pid not in self.worker_pids():
            raise ValueError(f"{pid} is not a worker of gunicorn {self.master_pid}")
        os.kill(pid, signal.SIGKILL)

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM, wait, then SIGKILL the master and every worker ever seen."""
        if self._proc is None:
            return
        self.worker_pids()
        terminate_tree(self._proc, signal.SIGTERM, timeout, extra=self._seen.values())


    # -- logs ----------------------------------------------------------------
    def log_lines(self) -> list[str]:
        try:
            return self.log_path.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return []

    def json_logs(self) -> list[dict[str, Any]]:
        """Every log line that is a JSON object (other lines, e.g. tracebacks, are skipped)."""
        out = []
        for line in self.log_lines():
            if line.startswith("{"):
                try:
                    obj = json.loads(line)
                except ValueError:
                    continue
                if isinstance(obj, dict):
                    out.append(obj)
        return out


