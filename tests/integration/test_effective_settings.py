"""The start-up checks judge what gunicorn really serves (command line over environment), on real gunicorn.

`-b`/`--workers` override BIND/WEB_CONCURRENCY: dev mode on a public socket and an
in-memory bus split over several workers are refused however they are asked for,
and the one-worker loopback command line people type starts without REDIS_URL.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from support import refusal
from support.gunicorn import Gunicorn, find_gunicorn
from support.http_json import get_json
from support.procs import REPO_ROOT, free_port, spawn, tail, terminate_tree, wait_until
from support.service import dev_token, service_env

from chatgenius import config


def run_until_exit(tmp_path: Path, argv: list[str], env: dict[str, str]) -> tuple[int, str]:
    return refusal.run_until_exit([find_gunicorn(), *argv], env, tmp_path / "gunicorn.log")


def base_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("BIND", "WEB_CONCURRENCY", "REDIS_URL", "REDIS_SENTINELS")}
    env.update(service_env(None), PYTHONUNBUFFERED="1", PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "prom"))
    env.update(extra)
    return env


config_errors = refusal.config_errors


def test_dev_mode_is_refused_when_the_command_line_binds_all_interfaces(tmp_path: Path):
    env = base_env(tmp_path, AUTH_MODE="dev", BIND=f"127.0.0.1:{free_port()}", WEB_CONCURRENCY="1")
    code, output = run_until_exit(tmp_path, ["-c", "gunicorn.conf.py", "-b", f"0.0.0.0:{free_port()}", "wsgi:app"], env)
    assert code != 0
    errors = config_errors(output)
    assert len(errors) == 1 and errors[0].startswith("config error: AUTH_MODE:"), output
    assert "Booting worker" not in output  # refused before any worker served anything


SYSTEMD_EXEC = (
    "import os, sys; os.dup2(int(sys.argv[1]), 3); os.environ['LISTEN_PID'] = str(os.getpid()); "
    "os.execv(sys.argv[2], sys.argv[2:])"
)


def test_dev_mode_is_refused_on_an_inherited_public_socket(tmp_path: Path):
    """systemd socket activation: gunicorn serves the socket it is given, whatever BIND says."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("0.0.0.0", 0))
    listener.listen(16)
    try:
        env = base_env(tmp_path, AUTH_MODE="dev", BIND=f"127.0.0.1:{free_port()}", WEB_CONCURRENCY="1", LISTEN_FDS="1")
        # LISTEN_PID must be gunicorn's own pid: a wrapper moves the socket to fd 3, sets it and execs gunicorn.
        argv = ["-c", SYSTEMD_EXEC, str(listener.fileno()), find_gunicorn(), "-c", "gunicorn.conf.py", "wsgi:app"]
        log_path = tmp_path / "gunicorn.log"
        with log_path.open("ab") as out:
            proc = subprocess.Popen(
                [sys.executable, *argv], cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                pass_fds=(listener.fileno(),), start_new_session=True,
            )
        try:
            wait_until(lambda: proc.poll() is not None, 20, 0.1, "gunicorn refuses the inherited socket")
        except AssertionError:
            raise AssertionError(f"gunicorn is still serving:\n{tail(log_path)}") from None
        finally:
            terminate_tree(proc, signal.SIGTERM, 10)
        output = log_path.read_text(errors="replace")
        assert proc.returncode != 0
        errors = config_errors(output)
        assert len(errors) == 1 and errors[0].startswith("config error: AUTH_MODE:") and "0.0.0.0" in errors[0], output
    finally:
        listener.close()


def test_several_workers_on_the_command_line_need_redis(tmp_path: Path):
    env = base_env(tmp_path, WEB_CONCURRENCY="1")
    argv = ["-c", "gunicorn.conf.py", "--workers", "3", "-b", f"127.0.0.1:{free_port()}", "wsgi:app"]
    code, output = run_until_exit(tmp_path, argv, env)
    assert code != 0
    errors = config_errors(output)
    assert len(errors) == 1 and errors[0].startswith("config error: REDIS_URL:") and "3 worker" in errors[0], output


def test_one_worker_on_loopback_from_the_command_line_starts_without_redis(tmp_path: Path):
    port = free_port()
    server = Gunicorn(workers=1, port=port, args=["--workers", "1", "--bind", f"127.0.0.1:{port}"], workdir=tmp_path / "g")
    server.env = base_env(tmp_path, PROMETHEUS_MULTIPROC_DIR=str(server.prometheus_dir))  # no BIND, no WEB_CONCURRENCY
    with server:
        token = dev_token(server.base_url, "solo", ["channel:*"], ["publish:events"])
        status, _, body = get_json(server.base_url + "/readyz", {"Authorization": f"Bearer {token}"})
        assert status == 200, body


def test_ttin_cannot_split_the_in_memory_bus(tmp_path: Path):
    port = free_port()
    server = Gunicorn(workers=1, port=port, args=["--workers", "1", "--bind", f"127.0.0.1:{port}"], workdir=tmp_path / "g")
    server.env = base_env(tmp_path, PROMETHEUS_MULTIPROC_DIR=str(server.prometheus_dir))
    with server:
        first = server.worker_pids()
        os.kill(server.master_pid, signal.SIGTTIN)
        wait_until(lambda: any(r.get("event") == "config.refused" for r in server.json_logs()), 10, 0.1, "TTIN refused")
        os.kill(server.master_pid, signal.SIGTTIN)  # a second one too; the master stays at one worker
        wait_until(lambda: sum(r.get("event") == "config.refused" for r in server.json_logs()) >= 2, 10, 0.1, "second TTIN refused")
        assert server.worker_pids() == first


@pytest.mark.parametrize(
    "bind,loopback",
    [
        ("127.0.0.1:8000", True), ("127.9.9.9:1", True), ("localhost:8000", True), ("[::1]:8000", True),
        ("unix:/run/cg.sock", True), ("[::ffff:127.0.0.1]:80", True), ("127.0.0.1:1,unix:/x", True),
        ("127.evil.example:8000", False), ("127.0.0.1.nip.io:80", False), ("0.0.0.0:8000", False), (":8000", False),
        ("[::]:8000", False), ("10.0.0.1:80", False), ("127.0.0.1:1,0.0.0.0:2", False), ("localhost.evil:1", False),
    ],
)
def test_loopback_is_judged_by_parsing_the_address(bind: str, loopback: bool):
    assert config.is_loopback_bind(bind) is loopback
    env = {"AUTH_MODE": "dev", "BIND": bind}
    if loopback:
        assert config.load(env).auth_mode == "dev"
    else:
        with pytest.raises(config.ConfigError, match="^AUTH_MODE:"):
            config.load(env)


def test_embedded_server_is_one_process_whatever_web_concurrency_says(tmp_path: Path):
    port = free_port()
    env = {"BIND": f"127.0.0.1:{port}", "WEB_CONCURRENCY": "4", "PATH": "/usr/bin:/bin"}
    log_path = tmp_path / "app.log"
    proc = spawn([sys.executable, "app.py"], log_path, REPO_ROOT, env)
    try:
        wait_until(lambda: get_json(f"http://127.0.0.1:{port}/healthz")[0] == 200, 15, ignore=(OSError,))
    except AssertionError:
        raise AssertionError(tail(log_path)) from None
    finally:
        terminate_tree(proc, signal.SIGTERM, 10)
