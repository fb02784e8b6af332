"""`chatgenius-realtime` (chatgenius/cli.py): check-config reads the environment like a worker and says one
line; dev-token asks a running dev-mode service. tests/install runs the installed command end to end."""

from __future__ import annotations

import subprocess
import sys

from support.procs import REPO_ROOT

from chatgenius import cli


def test_check_config_names_the_bad_variable_in_one_line_and_fails(capsys) -> None:
    assert cli.check_config({"AUTH_MODE": "dev", "HEARTBEAT_INTERVAL": "soon"}) == 1
    out = capsys.readouterr()
    assert out.out == "" and out.err == "config error: HEARTBEAT_INTERVAL: expected a number, got 'soon'\n"


def test_check_config_summarises_without_the_redis_password(capsys) -> None:
    env = {"REDIS_URL": "redis://app:s3cret@redis.internal:6380/0", "AUTH0_DOMAIN": "t.auth0.com", "AUTH0_AUDIENCE": "https://api"}
    assert cli.check_config(env) == 0
    out = capsys.readouterr().out
    assert out.startswith("config ok: ") and "redis://app:***@redis.internal:6380/0" in out and "s3cret" not in out
    assert "issuer https://t.auth0.com/" in out


def test_dev_token_without_a_service_fails_with_one_line(capsys) -> None:
    from support.procs import free_port

    assert cli.dev_token(f"http://127.0.0.1:{free_port()}", "alice", [], [], 60) == 1
    err = capsys.readouterr().err
    assert err.startswith("dev-token: no token from http://127.0.0.1:") and err.count("\n") == 1
    assert cli.dev_token("file:///etc/passwd", "alice", [], [], 60) == 1


def test_python_dash_m_chatgenius_is_the_same_command() -> None:
    done = subprocess.run([sys.executable, "-m", "chatgenius", "check-config"], cwd=REPO_ROOT, capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", "AUTH_MODE": "dev"}, timeout=60, check=False)
    assert done.returncode == 0 and done.stdout.startswith("config ok: bind 127.0.0.1:8000"), done
