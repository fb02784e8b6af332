"""Settings: one typed, frozen object read once from the environment.

Every variable of the contract's Operators section is read through this module's
table (the value parsers are in config_values.py, the address checks in
addresses.py); a bad value stops start-up with one line that names the variable
(`ConfigError`), so a typo never turns into a silent default in production.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from .addresses import is_loopback_bind, is_loopback_host, is_private_bind
from .config_values import (
    ConfigError,
    algorithms,
    boolean,
    choice,
    cluster_nodes,
    cluster_shards,
    integer,
    number,
    origins,
    rate_limits,
    redis_url,
    secret,
    sentinels,
)


@dataclass(frozen=True)
class Settings:
    """The service's configuration; see docs/CONFIG.md for every variable."""

    redis_url: str | None = None
    redis_sentinels: tuple[tuple[str, int], ...] = ()
    redis_sentinel_master: str = "mymaster"
    redis_cluster_nodes: tuple[tuple[str, int], ...] = ()  # Redis Cluster start-up nodes (docs/ARCHITECTURE.md)
    redis_cluster_shards: int = 8
    cors_origins: tuple[str, ...] = ()
    max_connections_per_user: int = 5
    presence_grace: float = 10.0
    channels_claim: str = "https://chatgenius.app/channels"
    heartbeat_interval: float = 15.0
    enable_sse: bool = True
    enable_compression: bool = False
    detach_idle_streams: bool = True
    auth_mode: str = "auth0"
    auth0_domain: str = ""
    auth0_audience: str = ""
    jwks_url: str = ""
    jwt_issuer: str = ""
    jwt_algorithms: tuple[str, ...] = ("RS256",)
    rate_limit_connect: str = "30/minute"
    rate_limit_publish: str = "600/minute"
    rate_limit_poll: str = "120/minute"
    history_maxlen: int = 1000
    history_ttl: int = 86400
    max_event_bytes: int = 65536
    idempotency_window: int = 600
    log_level: str = "INFO"
    log_format: str = "json"
    metrics_token: str = field(default="", repr=False)  # a credential: never in a repr or a log line
    bind: str = "127.0.0.1:8000"
    workers: int = 1
    # Not in the contract's list; tuning knobs with safe defaults.
    queue_max_bytes: int = 1 << 20
    max_channels_per_stream: int = 64
    reconnect_retry_ms: int = 2000
    poll_max_timeout: float = 30.0
    lease_ttl: float = 60.0
    jwks_min_refresh: float = 30.0
    ticket_ttl: float = 30.0
    flag_refresh: float = 1.0
    trusted_proxies: int = 0
    broadcast_log_interval: float = 10.0
    # Deprecated and ignored (batching follows the backlog, see bus/redis.py): still parsed so
    # deployments that set FANOUT_WINDOW_MS start, with a warning (exposure_warnings).
    fanout_window_ms: int | None = None

    @property
    def issuer(self) -> str:
        """The `iss` tokens must carry: JWT_ISSUER, else the Auth0 tenant's URL."""
        if self.jwt_issuer:
            return self.jwt_issuer
        return f"https://{self.auth0_domain}/" if self.auth0_domain else ""

    @property
    def jwks_endpoint(self) -> str:
        """Where the signing keys are fetched: JWKS_URL, else the Auth0 tenant's well-known JWKS."""
        if self.jwks_url:
            return self.jwks_url
        return f"https://{self.auth0_domain}/.well-known/jwks.json" if self.auth0_domain else ""


_PARSERS = {
    "REDIS_URL": ("redis_url", redis_url),
    "REDIS_SENTINELS": ("redis_sentinels", sentinels),
    "REDIS_SENTINEL_MASTER": ("redis_sentinel_master", lambda n, r: r.strip()),
    "REDIS_CLUSTER_NODES": ("redis_cluster_nodes", cluster_nodes),
    "REDIS_CLUSTER_SHARDS": ("redis_cluster_shards", cluster_shards),
    "CORS_ORIGIN": ("cors_origins", origins),
    "MAX_CONNECTIONS_PER_USER": ("max_connections_per_user", lambda n, r: integer(n, r, 1, 10_000)),
    "PRESENCE_GRACE": ("presence_grace", lambda n, r: number(n, r, 0, 3600)),
    "CHANNELS_CLAIM": ("channels_claim", lambda n, r: r.strip()),
    "HEARTBEAT_INTERVAL": ("heartbeat_interval", lambda n, r: number(n, r, 0.05, 300)),
    "ENABLE_SSE": ("enable_sse", boolean),
    "ENABLE_COMPRESSION": ("enable_compression", boolean),
    "DETACH_IDLE_STREAMS": ("detach_idle_streams", boolean),
    "AUTH0_DOMAIN": ("auth0_domain", lambda n, r: r.strip()),
    "AUTH0_AUDIENCE": ("auth0_audience", lambda n, r: r.strip()),
    "JWKS_URL": ("jwks_url", lambda n, r: r.strip()),
    "JWT_ISSUER": ("jwt_issuer", lambda n, r: r.strip()),
    "RATE_LIMIT_CONNECT": ("rate_limit_connect", rate_limits),
    "RATE_LIMIT_PUBLISH": ("rate_limit_publish", rate_limits),
    "RATE_LIMIT_POLL": ("rate_limit_poll", rate_limits),
    "HISTORY_MAXLEN": ("history_maxlen", lambda n, r: integer(n, r, 1, 1_000_000)),
    "HISTORY_TTL": ("history_ttl", lambda n, r: integer(n, r, 1, 365 * 86400)),
    "MAX_EVENT_BYTES": ("max_event_bytes", lambda n, r: integer(n, r, 64, 16 << 20)),
    "IDEMPOTENCY_WINDOW": ("idempotency_window", lambda n, r: integer(n, r, 1, 7 * 86400)),
    "LOG_FORMAT": ("log_format", lambda n, r: choice(n, r, ("json", "text"))),
    "METRICS_TOKEN": ("metrics_token", lambda n, r: secret(n, r, 32)),
    "BIND": ("bind", lambda n, r: r.strip()),
    "WEB_CONCURRENCY": ("workers", lambda n, r: integer(n, r, 1, 256)),
    "SSE_QUEUE_MAX_BYTES": ("queue_max_bytes", lambda n, r: integer(n, r, 1024, 1 << 30)),
    "RECONNECT_RETRY_MS": ("reconnect_retry_ms", lambda n, r: integer(n, r, 0, 600_000)),
    "LEASE_TTL": ("lease_ttl", lambda n, r: number(n, r, 1, 60)),
    "TRUSTED_PROXIES": ("trusted_proxies", lambda n, r: integer(n, r, 0, 5)),
    "BROADCAST_LOG_INTERVAL": ("broadcast_log_interval", lambda n, r: number(n, r, 0.1, 3600)),
    "FANOUT_WINDOW_MS": ("fanout_window_ms", lambda n, r: integer(n, r, 0, 1000)),
    "JWKS_MIN_REFRESH": ("jwks_min_refresh", lambda n, r: number(n, r, 0, 3600)),
    "TICKET_TTL": ("ticket_ttl", lambda n, r: number(n, r, 1, 30)),
}


def parse(env: Mapping[str, str], names: tuple[str, ...]) -> dict[str, object]:
    """Only the variables `names` that are set in `env`, parsed as load() parses them (Settings
    attribute -> value): for processes that need a few settings, not the service's whole set."""
    values: dict[str, object] = {}
    for var in names:
        attr, parser = _PARSERS[var]
        raw = env.get(var)
        if raw is not None and raw != "":
            values[attr] = parser(var, raw)
    return values


def load(env: Mapping[str, str] | None = None, **overrides: object) -> Settings:
    """Read the settings from `env` (default: os.environ), then apply overrides."""
    env = os.environ if env is None else env
    values = parse(env, tuple(_PARSERS))
    if env.get("JWT_ALGORITHMS"):
        values["jwt_algorithms"] = algorithms("JWT_ALGORITHMS", env["JWT_ALGORITHMS"])
    mode = (env.get("AUTH_MODE") or "auth0").strip().lower()
    if mode not in ("auth0", "dev"):
        raise ConfigError(f"AUTH_MODE: expected auth0 or dev, got {mode!r}")
    values["auth_mode"] = mode
    values["log_level"] = log_level(env)
    values.update(overrides)
    settings = Settings(**values)  # type: ignore[arg-type]
    return validate(settings)


def workers_default(env: Mapping[str, str]) -> int:
    """WEB_CONCURRENCY for gunicorn.conf.py (2 when unset); `--workers` overrides it (gunicorn_checks)."""
    raw = env.get("WEB_CONCURRENCY") or "2"
    return integer("WEB_CONCURRENCY", raw, 1, 256)


def log_level(env: Mapping[str, str]) -> str:
    """LOG_LEVEL, upper-cased; also read by gunicorn.conf.py before gunicorn configures its loggers."""
    level = (env.get("LOG_LEVEL") or "INFO").strip().upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise ConfigError(f"LOG_LEVEL: expected DEBUG, INFO, WARNING, ERROR or CRITICAL, got {level!r}")
    return level


def validate(s: Settings) -> Settings:
    """Cross-field checks that no single variable can make on its own."""
    if "*" in s.cors_origins and len(s.cors_origins) > 1:
        raise ConfigError("CORS_ORIGIN: '*' cannot be combined with other origins")
    if s.auth_mode == "auth0":
        if not s.issuer:
            raise ConfigError("AUTH0_DOMAIN: required when AUTH_MODE=auth0 (or set JWT_ISSUER and JWKS_URL)")
        if not s.jwks_endpoint:
            raise ConfigError("JWKS_URL: required when AUTH0_DOMAIN is not set")
        if not s.auth0_audience:
            raise ConfigError("AUTH0_AUDIENCE: required when AUTH_MODE=auth0")
        _check_jwks_url(s.jwks_endpoint)
    if s.auth_mode == "dev" and not is_loopback_bind(s.bind):
        raise ConfigError(
            f"AUTH_MODE: dev mode mints its own tokens and is refused unless every bound address is loopback, got {s.bind!r}"
        )
    if s.workers > 1 and not (s.redis_url or s.redis_sentinels or s.redis_cluster_nodes):
        raise ConfigError(
            f"REDIS_URL: required with {s.workers} worker processes (gunicorn --workers or WEB_CONCURRENCY); "
            "the in-memory bus is one process only"
        )
    return s


def _check_jwks_url(url: str) -> None:
    """The keys that decide who anyone is come over HTTPS; plain http only from this machine."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
    except ValueError:
        raise ConfigError(f"JWKS_URL: not a URL, got {url!r}") from None
    if parts.scheme == "https" and host:
        return
    if parts.scheme == "http" and host and is_loopback_host(host):
        return
    raise ConfigError(f"JWKS_URL: must be https:// (http:// only on loopback), got {url!r}")


def exposure_warnings(s: Settings) -> list[str]:
    """Settings that start but deserve a warning line: trusting X-Forwarded-For on a public socket,
    a deprecated variable that no longer does anything."""
    out = []
    if s.fanout_window_ms is not None:
        out.append(
            f"FANOUT_WINDOW_MS={s.fanout_window_ms} is deprecated and ignored: the bus reader batches what "
            "arrives while it writes, without a fixed window; remove the variable"
        )
    if not s.trusted_proxies:
        return out
    public = [part.strip() for part in s.bind.split(",") if part.strip() and not is_private_bind(part)]
    if not public:
        return out
    return out + [
        f"TRUSTED_PROXIES={s.trusted_proxies} on a public bind ({', '.join(public)}): anyone who reaches it directly "
        "sets X-Forwarded-For and escapes per-address limits; bind to loopback or a private address behind the proxy"
    ]
