"""Private redis-server processes for tests (a replica via `replica_of`; Sentinel in redis_sentinel).

Each instance owns a port on 127.0.0.1 and a data directory, so a test can
kill, pause or restart it (same port, same dir) to exercise reconnects and
AOF durability without ever touching the machine's Redis on 6379.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from .procs import Managed, find_redis_server, free_port, spawn, tail, terminate_tree, wait_until


def ping(port: int, host: str = "127.0.0.1") -> bool:
    """True if the server answers +PONG; raw socket, so no client retries or -LOADING surprises."""
    try:
        with socket.create_connection((host, port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer(Managed):
    """One redis-server process on 127.0.0.1 with its own port and directory.

    `appendonly=True` turns on AOF with `appendfsync always`, so data written
    before a SIGKILL survives `restart()`. RDB snapshots are always off
    (`--save ""`) so only the mode under test persists anything.
    """

    role = "redis"

    def __init__(
        self,
        port: int | None = None,
        *,
        appendonly: bool = False,
        args: Sequence[str] = (),
        replica_of: RedisServer | None = None,
        binary: str | None = None,
        workdir: Path | None = None,
        startup_timeout: float = 10.0,
    ) -> None:
        self.port = port or free_port()
        self.appendonly = appendonly
        self.args = list(args)
        self.replica_of = replica_of
        self.binary = binary or find_redis_server() or "redis-server"
        self._owns_dir = workdir is None
        self.dir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix=f"{self.role}-"))
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.dir / f"{self.role}-{self.port}.log"
        self.startup_timeout = startup_timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self._paused = False

    # -- addresses -------------------------------------------------------
    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise RuntimeError(f"{self.role} on :{self.port} is not started")
        return self._proc.pid

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def paused(self) -> bool:
        return self._paused

    def client(self, **kwargs: Any) -> redis.Redis:
        """A redis.Redis on this server (bytes replies); the caller closes it.

        No retries by default: a test inspecting state should see a hung or
        dead server at once, not after redis-py's backoff.
        """
        kwargs.setdefault("decode_responses", False)
        kwargs.setdefault("socket_timeout", 5)
        kwargs.setdefault("retry", Retry(NoBackoff(), 0))
        return redis.Redis(host="127.0.0.1", port=self.port, **kwargs)

    # -- lifecycle -------------------------------------------------------
    def argv(self) -> list[str]:
        """The command line; subclasses (sentinel) replace it."""
        argv = [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.dir),
            "--save",
            "",
            "--daemonize",
            "no",
            "--logfile",
            "",
        ]
        if self.appendonly:
            argv += ["--appendonly", "yes", "--appendfsync", "always"]
        else:
            argv += ["--appendonly", "no"]
        if self.replica_of is not None:
            argv += ["--replicaof", "127.0.0.1", str(self.replica_of.port)]
        return argv + self.args

    def start(self) -> RedisServer:
        """Spawn the server and return once it answers PING."""
        if self.running:
            return self
        # SIGKILL on parent death: a paused (SIGSTOPped) server would sit on SIGTERM forever.
        self._proc = spawn(self.argv(), self.log_path, self.dir, death_signal=signal.SIGKILL)
        self._paused = False
        proc = self._proc

        def up() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"{self.role} on :{self.port} exited with {proc.returncode}:\n{tail(self.log_path)}")
            return ping(self.port)

        try:
            wait_until(up, self.startup_timeout, message=f"{self.role} PING on :{self.port}")
        except AssertionError as exc:
            self.kill()
            raise AssertionError(f"{exc}\n{tail(self.log_path)}") from None
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Graceful SIGTERM (Redis flushes the AOF), then SIGKILL after `timeout`."""
        if self._proc is None:
            return
        if self._paused:
            self.resume()
        terminate_tree(self._proc, signal.SIGTERM, timeout)

    def kill(self) -> None:
        """SIGKILL: the crash case; nothing is flushed beyond what fsync already did."""
        if self._proc is None:
            return
        terminate_tree(self._proc, signal.SIGKILL, 5)
        self._paused = False

    def restart(self) -> RedisServer:
        """Stop if running, then start again on the same port and directory."""
        self.stop()
        return self.start()

    def pause(self) -> None:
        """SIGSTOP: the server keeps its sockets but answers nothing (a hung Redis)."""
        self._signal(signal.SIGSTOP)
        self._paused = True

    def resume(self) -> None:
        """SIGCONT after pause()."""
        self._signal(signal.SIGCONT)
        self._paused = False

    def _signal(self, sig: int) -> None:
        if not self.running:
            raise RuntimeError(f"{self.role} on :{self.port} is not running")
        assert self._proc is not None
        self._proc.send_signal(sig)




    def __repr__(self) -> str:
        return f"<{type(self).__name__} :{self.port} pid={self._proc and self._proc.pid}>"
