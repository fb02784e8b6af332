"""Settings that expose the service: trusted proxy headers on a public socket, keys over plain HTTP.

Real gunicorn for the start-up behaviour; the shipped env example is loaded as it is.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest
from support import refusal
from support.gunicorn import Gunicorn, find_gunicorn
from support.jwks_server import AUDIENCE, ISSUER
from support.procs import REPO_ROOT, free_port, wait_until
from support.service import service_env

from chatgenius import config

AUTH0 = {"AUTH0_AUDIENCE": "api", "JWT_ISSUER": "https://tenant.example/"}


@pytest.mark.parametrize(
    "url,ok",
    [
        ("https://tenant.eu.auth0.com/.well-known/jwks.json", True),
        ("http://127.0.0.1:8080/jwks.json", True),
        ("http://localhost/jwks.json", True),
        ("http://[::1]:9/jwks.json", True),
        ("http://tenant.eu.auth0.com/.well-known/jwks.json", False),
        ("http://127.evil.example/jwks.json", False),
        ("http://10.0.0.5/jwks.json", False),
        ("ftp://127.0.0.1/jwks.json", False),
        ("https:///jwks.json", False),
    ],
)
def test_jwks_url_must_be_https_unless_loopback(url: str, ok: bool):
    env = {**AUTH0, "JWKS_URL": url}
    if ok:
        assert config.load(env).jwks_endpoint == url
    else:
        with pytest.raises(config.ConfigError, match="^JWKS_URL:"):
            config.load(env)


@pytest.mark.parametrize(
    "bind,warned",
    [
        ("0.0.0.0:8000", True), ("[::]:8000", True), ("93.184.216.34:8000", True), ("app.example.com:8000", True),
        ("127.0.0.1:8000,0.0.0.0:8001", True),
        ("127.0.0.1:8000", False), ("10.0.1.11:8000", False), ("192.168.1.2:80", False), ("unix:/run/cg.sock", False),
        ("[fd00::1]:8000", False),
    ],
)
def test_trusted_proxies_on_a_public_bind_is_warned(bind: str, warned: bool):
    settings = config.load({**AUTH0, "JWKS_URL": "https://t.example/jwks", "BIND": bind, "TRUSTED_PROXIES": "1"})
    warnings = config.exposure_warnings(settings)
    assert bool(warnings) is warned, warnings
    if warned:
        assert warnings[0].startswith("TRUSTED_PROXIES=1") and "\n" not in warnings[0]
    assert config.exposure_warnings(dataclasses.replace(settings, trusted_proxies=0)) == []


def test_the_env_example_binds_privately_and_starts_without_a_warning():
    env = {}
    for line in (REPO_ROOT / "deploy/realtime.env.example").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            env[key.strip()] = value.strip()
    settings = config.load(env)
    assert settings.trusted_proxies >= 1
    assert config.exposure_warnings(settings) == []


def test_gunicorn_warns_at_start_when_proxies_are_trusted_on_all_interfaces(tmp_path: Path, redis_url: str):
    port = free_port()
    env = service_env(redis_url, AUTH_MODE="auth0", JWKS_URL="http://127.0.0.1:9/jwks.json", JWT_ISSUER=ISSUER,
                      AUTH0_AUDIENCE=AUDIENCE, TRUSTED_PROXIES="1")
    with Gunicorn(workers=1, port=port, env=env, args=["-b", f"0.0.0.0:{port}"], workdir=tmp_path / "g") as server:
        line = wait_until(lambda: [r for r in server.json_logs() if r.get("event") == "config.warning"], 5)[0]
        assert line["warning"].startswith("TRUSTED_PROXIES=1") and f"0.0.0.0:{port}" in line["warning"]


def test_gunicorn_refuses_plain_http_jwks_off_loopback(tmp_path: Path, redis_url: str):
    env = {**os.environ, **service_env(redis_url, AUTH_MODE="auth0", JWKS_URL="http://keys.example.com/jwks.json",
                                       JWT_ISSUER=ISSUER, AUTH0_AUDIENCE=AUDIENCE), "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    env.pop("WEB_CONCURRENCY", None)
    argv = [find_gunicorn(), "-c", "gunicorn.conf.py", "-b", f"127.0.0.1:{free_port()}", "wsgi:app"]
    code, output = refusal.run_until_exit(argv, env, tmp_path / "log")
    errors = refusal.config_errors(output)
    assert code != 0 and len(errors) == 1 and errors[0].startswith("config error: JWKS_URL:"), output
