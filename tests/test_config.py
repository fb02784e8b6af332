"""Settings: read once, typed, and every bad value stops start-up naming its variable."""

from __future__ import annotations

import pytest

from chatgenius import config
from chatgenius.config import ConfigError

BASE = {"AUTH_MODE": "dev", "BIND": "127.0.0.1:8000"}


def test_defaults_follow_the_contract():
    s = config.load(BASE)
    assert s.max_connections_per_user == 5
    assert s.heartbeat_interval == 15.0
    assert s.presence_grace == 10.0
    assert s.channels_claim == "https://chatgenius.app/channels"
    assert s.max_event_bytes == 65536
    assert s.enable_sse is True and s.enable_compression is False
    assert s.redis_url is None
    assert s.idempotency_window == 600 and config.load({**BASE, "IDEMPOTENCY_WINDOW": "30"}).idempotency_window == 30


def test_values_are_parsed_and_frozen():
    s = config.load({**BASE, "HEARTBEAT_INTERVAL": "2.5", "ENABLE_SSE": "off", "CORS_ORIGIN": "https://a.example, https://b.example/",
                     "REDIS_URL": "unix:///run/redis.sock", "WEB_CONCURRENCY": "4"})
    assert s.heartbeat_interval == 2.5 and s.enable_sse is False
    assert s.cors_origins == ("https://a.example", "https://b.example")
    with pytest.raises(AttributeError):
        s.heartbeat_interval = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    "var, value",
    [
        ("MAX_CONNECTIONS_PER_USER", "many"),
        ("MAX_CONNECTIONS_PER_USER", "0"),
        ("HEARTBEAT_INTERVAL", "-1"),
        ("ENABLE_SSE", "maybe"),
        ("ENABLE_COMPRESSION", "2"),
        ("REDIS_URL", "http://localhost"),
        ("CORS_ORIGIN", "not-an-origin"),
        ("RATE_LIMIT_CONNECT", "lots"),
        ("HISTORY_MAXLEN", "1.5"),
        ("AUTH_MODE", "magic"),
        ("LOG_LEVEL", "LOUD"),
        ("JWT_ALGORITHMS", "HS256"),
        ("JWT_ALGORITHMS", "none"),
        ("FANOUT_WINDOW_MS", "-1"),
        ("FANOUT_WINDOW_MS", "5000"),
        ("FANOUT_WINDOW_MS", "fast"),
        ("IDEMPOTENCY_WINDOW", "0"),
        ("IDEMPOTENCY_WINDOW", "ten minutes"),
    ],
)
def test_bad_values_name_their_variable(var, value):
    with pytest.raises(ConfigError) as info:
        config.load({**BASE, var: value})
    assert str(info.value).startswith(var + ":")
    assert "\n" not in str(info.value)


def test_dev_auth_is_refused_off_loopback():
    with pytest.raises(ConfigError, match="^AUTH_MODE"):
        config.load({"AUTH_MODE": "dev", "BIND": "0.0.0.0:8000"})
    assert config.load({"AUTH_MODE": "dev", "BIND": "[::1]:8000"}).auth_mode == "dev"


def test_auth0_mode_needs_domain_and_audience():
    with pytest.raises(ConfigError, match="^AUTH0_DOMAIN"):
        config.load({"BIND": "0.0.0.0:8000"})
    with pytest.raises(ConfigError, match="^AUTH0_AUDIENCE"):
        config.load({"AUTH0_DOMAIN": "x.auth0.com"})
    s = config.load({"AUTH0_DOMAIN": "x.auth0.com", "AUTH0_AUDIENCE": "api"})
    assert s.issuer == "https://x.auth0.com/" and s.jwks_endpoint == "https://x.auth0.com/.well-known/jwks.json"


def test_several_workers_need_redis():
    with pytest.raises(ConfigError, match="^REDIS_URL"):
        config.load({**BASE, "WEB_CONCURRENCY": "2"})
    assert config.load({**BASE, "WEB_CONCURRENCY": "2", "REDIS_URL": "redis://127.0.0.1:6379/0"}).workers == 2
