"""Run a server command that is expected to refuse its configuration and exit by itself."""

from __future__ import annotations

import signal
from collections.abc import Mapping, Sequence
from pathlib import Path

from .procs import REPO_ROOT, spawn, tail, terminate_tree, wait_until


def run_until_exit(argv: Sequence[str], env: Mapping[str, str], log_path: Path, timeout: float = 20.0) -> tuple[int, str]:
    """(exit status, output) of `argv` run in the repo; a process still running after `timeout` fails the test."""
    proc = spawn(list(argv), log_path, REPO_ROOT, env)
    try:
        wait_until(lambda: proc.poll() is not None, timeout, 0.1, f"{argv[0]} refuses and exits")
    except AssertionError:
        raise AssertionError(f"{argv[0]} is still serving:\n{tail(log_path)}") from None
    finally:
        terminate_tree(proc, signal.SIGTERM, 10)
    return int(proc.returncode), log_path.read_text(errors="replace")


def config_errors(output: str) -> list[str]:
    """The `config error:` lines of a refused start (exactly one is expected)."""
    return [line for line in output.splitlines() if line.startswith("config error:")]
