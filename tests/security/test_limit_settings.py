"""Rate-limit strings are checked by `limits`, the parser that enforces them; a bad LOG_LEVEL is one line.

Real gunicorn, Redis and a local JWKS. `10/minute 5/hour` is not a limit `limits`
can read: flask-limiter would enforce nothing (fail open) and the publish quota
would crash the workers, so start-up refuses it naming the variable. Several
limits joined by `;`, `,` or `|` are accepted and every one of them bites.
"""

from __future__ import annotations

import os
from contextlib import ExitStack
from pathlib import Path

import pytest
from support import refusal
from support.gunicorn import find_gunicorn
from support.http_json import post_json, request
from support.jwks_server import JWKSServer

from chatgenius import config

from .conftest import security_env, start_deployment

BASE = {"AUTH_MODE": "dev", "BIND": "127.0.0.1:8000"}


@pytest.mark.parametrize("raw", ["10/minute 5/hour", "10/minute and 5/hour", "10/fortnight", "0/minute", "10/minute;", "ten/minute"])
@pytest.mark.parametrize("var", ["RATE_LIMIT_CONNECT", "RATE_LIMIT_PUBLISH", "RATE_LIMIT_POLL"])
def test_unparseable_limit_names_its_variable(var: str, raw: str):
    with pytest.raises(config.ConfigError) as info:
        config.load({**BASE, var: raw})
    assert str(info.value).startswith(var + ":") and "\n" not in str(info.value)


@pytest.mark.parametrize("raw", ["10/minute;5/hour", "10/minute, 5/hour", "10/minute|5/hour", "10 per minute", "3/2 seconds", "30/Minute"])
def test_limits_that_limits_parses_are_accepted(raw: str):
    assert config.load({**BASE, "RATE_LIMIT_CONNECT": raw}).rate_limit_connect == raw


def _gunicorn_output(tmp_path: Path, redis_url: str, **env: str) -> tuple[int, str]:
    with JWKSServer() as jwks:
        full = {**os.environ, **security_env(redis_url, jwks, **env), "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
        return refusal.run_until_exit([find_gunicorn(), "-c", "gunicorn.conf.py", "-b", "127.0.0.1:0", "wsgi:app"], full, tmp_path / "log")


@pytest.mark.parametrize(
    "var,raw",
    [("RATE_LIMIT_CONNECT", "10/minute 5/hour"), ("RATE_LIMIT_PUBLISH", "10/minute 5/hour"), ("LOG_LEVEL", "LOUD")],
)
def test_gunicorn_refuses_a_bad_setting_with_one_line_naming_it(tmp_path: Path, redis_url: str, var: str, raw: str):
    code, output = _gunicorn_output(tmp_path, redis_url, **{var: raw})
    assert code != 0
    errors = refusal.config_errors(output)
    assert len(errors) == 1 and errors[0].startswith(f"config error: {var}:"), output
    assert "Traceback" not in output, output


def test_every_limit_of_a_list_is_enforced(redis_binary: str, tmp_path: Path):
    """The second limit of `1000/minute;3/hour` is the one that bites: 3 tickets, 3 publishes, then 429s."""
    with ExitStack() as stack:
        env = {"RATE_LIMIT_CONNECT": "1000/minute;3/hour", "RATE_LIMIT_PUBLISH": "1000/minute|3/hour"}
        deployment = start_deployment(stack, redis_binary, tmp_path, **env)
        token = deployment.token("limits-user", permissions=("publish:events",))
        auth = {"Authorization": f"Bearer {token}"}
        tickets = [request("POST", deployment.base + "/tickets", b"", auth).status for _ in range(5)]
        assert tickets == [200, 200, 200, 429, 429], tickets
        event = {"channel": "channel:limits", "type": "message.created", "data": {}}
        published = [post_json(deployment.base + "/events", event, auth)[0] for _ in range(5)]
        assert published == [201, 201, 201, 429, 429], published
