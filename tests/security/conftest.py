"""One hardened deployment shared by the security tests: 2 gevent workers, Redis, a local JWKS.

Limits are set tight so tests can reach them (2 streams per user, 5 polls a
minute, 3 s leases, 2 s tickets); each test uses its own user names, so the
counters of one test never leak into another. Tests that kill a worker, stop
the JWKS or need other settings start their own processes.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest
from support.gunicorn import Gunicorn
from support.http_json import post_json
from support.jwks_server import AUDIENCE, ISSUER, Issuer, JWKSServer
from support.redis_server import RedisServer
from support.sse_client import SSEClient

ORIGINS = ("https://app.example.com", "https://admin.example.com")


def security_env(redis_url: str, jwks: JWKSServer, **extra: str) -> dict[str, str]:
    """Production auth mode against the local JWKS, with limits a test can reach."""
    env = {
        "AUTH_MODE": "auth0",
        "JWKS_URL": jwks.url,
        "JWT_ISSUER": ISSUER,
        "AUTH0_AUDIENCE": AUDIENCE,
        "JWKS_MIN_REFRESH": "0.3",
        "REDIS_URL": redis_url,
        "MAX_CONNECTIONS_PER_USER": "2",
        "LEASE_TTL": "3",
        "TICKET_TTL": "2",
        "HEARTBEAT_INTERVAL": "1",
        "RATE_LIMIT_POLL": "5/minute",
        "RATE_LIMIT_CONNECT": "10000/minute",
        "RATE_LIMIT_PUBLISH": "10000/minute",
        "CORS_ORIGIN": ",".join(ORIGINS),
        "LOG_LEVEL": "DEBUG",
    }
    env.update(extra)
    return env


@dataclass
class Deployment:
    server: Gunicorn
    redis: RedisServer
    jwks: JWKSServer
    issuer: Issuer

    @property
    def base(self) -> str:
        return self.server.base_url

    def token(self, sub: str, channels: tuple[str, ...] = ("channel:*",), permissions: tuple[str, ...] = (), ttl: float = 600) -> str:
        return self.issuer.token(sub, channels, permissions, ttl)

    def publisher(self) -> str:
        return self.token("backend", ("channel:*",), ("publish:events",))

    def stream(self, token: str | None, query: str, headers: Mapping[str, str] | None = None, timeout: float = 10) -> SSEClient:
        hdrs = dict(headers or {})
        if token is not None:
            hdrs["Authorization"] = f"Bearer {token}"
        return SSEClient(f"{self.base}/stream?{query}", hdrs, timeout=timeout)

    def publish(self, channel: str, data: dict, etype: str = "message.created") -> str:
        status, _, body = post_json(
            f"{self.base}/events", {"channel": channel, "type": etype, "data": data}, {"Authorization": f"Bearer {self.publisher()}"}
        )
        assert status == 201, body
        return body["ids"][0]

    def logs(self, event: str | None = None) -> list[dict]:
        return [r for r in self.server.json_logs() if event is None or r.get("event") == event]


def start_deployment(stack: ExitStack, redis_binary: str, workdir: Path, **env: str) -> Deployment:
    """Redis, JWKS and gunicorn, each registered on `stack` so all stop whatever happens."""
    redis = stack.enter_context(RedisServer(binary=redis_binary, workdir=workdir / "redis"))
    jwks = stack.enter_context(JWKSServer())
    issuer = Issuer(jwks)
    server = stack.enter_context(Gunicorn(workers=2, env=security_env(redis.url, jwks, **env), workdir=workdir / "gunicorn"))
    return Deployment(server, redis, jwks, issuer)


@pytest.fixture(scope="package")
def deployment(redis_binary: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    with ExitStack() as stack:
        yield start_deployment(stack, redis_binary, tmp_path_factory.mktemp("security"))


@pytest.fixture
def user() -> str:
    """A user name no other test uses (limits count per user)."""
    return f"auth0|{uuid.uuid4().hex[:12]}"
