"""Settings: one typed, frozen object read once from the environment.

Every variable of the contract's Operators section is parsed here and nowhere
else; a bad value stops start-up with one line that names the variable
(`ConfigError`), so a typo never turns into a silent default in production.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from limits import parse_many

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
class ConfigError(ValueError):
    """A setting is missing or malformed; the message is the one line to print."""


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
    extra: Mapping[str, str] = field(default_factory=dict)

    @property
    def issuer(self) -> str:
        if self.jwt_issuer:
            return self.jwt_issuer
        return f"https://{self.auth0_domain}/" if self.auth0_domain else ""

    @property
    def jwks_endpoint(self) -> str:
        if self.jwks_url:
            return self.jwks_url
        return f"https://{self.auth0_domain}/.well-known/jwks.json" if self.auth0_domain else ""

    def replace(self, **changes: object) -> Settings:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


def _bool(name: str, raw: str) -> bool:
    low = raw.strip().lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise ConfigError(f"{name}: expected true or false, got {raw!r}")


def _int(name: str, raw: str, low: int, high: int) -> int:
    try:
        value = int(raw.strip())
    except ValueError:
        raise ConfigError(f"{name}: expected an integer, got {raw!r}") from None
    if not low <= value <= high:
        raise ConfigError(f"{name}: must be between {low} and {high}, got {value}")
    return value


def _float(name: str, raw: str, low: float, high: float) -> float:
    try:
        value = float(raw.strip())
    except ValueError:
        raise ConfigError(f"{name}: expected a number, got {raw!r}") from None
    if not low <= value <= high:
        raise ConfigError(f"{name}: must be between {low} and {high}, got {value}")
    return value


def _limit(name: str, raw: str) -> str:
    """Checked by `limits`, the parser flask-limiter and the publish quota use on this very string.

    Several limits are joined by `;`, `,` or `|` (`10/minute;100/hour`), each enforced; anything
    `limits` cannot parse (`10/minute 5/hour`) would make flask-limiter enforce nothing at all.
    """
    try:
        items = parse_many(raw)
    except ValueError:
        items = []
    if not items or any(item.amount < 1 for item in items):
        raise ConfigError(
            f"{name}: expected rate limits like '30/minute' or '10/second;300/hour' (joined by ';', ',' or '|'), got {raw!r}"
        )
    return raw.strip()


def _choice(name: str, raw: str, allowed: tuple[str, ...]) -> str:
    value = raw.strip().lower()
    if value not in allowed:
        raise ConfigError(f"{name}: expected {' or '.join(allowed)}, got {raw!r}")
    return value


def _secret(name: str, raw: str, min_length: int) -> str:
    value = raw.strip()
    if len(value) < min_length or not re.fullmatch(r"[A-Za-z0-9._~+/=-]+", value):
        raise ConfigError(f"{name}: expected at least {min_length} characters of [A-Za-z0-9._~+/=-] "
                          "(e.g. from `openssl rand -hex 32`); the value is not shown")
    return value


def _redis_url(name: str, raw: str) -> str:
    if not re.match(r"^(redis|rediss|unix)://", raw):
        raise ConfigError(f"{name}: expected redis://, rediss:// or unix://, got {raw!r}")
    return raw


def _sentinels(name: str, raw: str) -> tuple[tuple[str, int], ...]:
    out = []
    for part in filter(None, (p.strip() for p in raw.split(","))):
        host, _, port = part.rpartition(":")
        if not host or not port.isdigit():
            raise ConfigError(f"{name}: expected host:port[,host:port], got {raw!r}")
        out.append((host, int(port)))
    return tuple(out)


def _origins(name: str, raw: str) -> tuple[str, ...]:
    origins = tuple(o.strip().rstrip("/") for o in raw.split(",") if o.strip())
    for origin in origins:
        if origin != "*" and not re.fullmatch(r"https?://[^/\s]+", origin):
            raise ConfigError(f"{name}: {origin!r} is not an origin like https://app.example.com")
    return origins


_PARSERS = {
    "REDIS_URL": ("redis_url", _redis_url),
    "REDIS_SENTINELS": ("redis_sentinels", _sentinels),
    "REDIS_SENTINEL_MASTER": ("redis_sentinel_master", lambda n, r: r.strip()),
    "REDIS_CLUSTER_NODES": ("redis_cluster_nodes", _sentinels),  # the same host:port list
    "REDIS_CLUSTER_SHARDS": ("redis_cluster_shards", lambda n, r: _int(n, r, 1, 14)),
    "CORS_ORIGIN": ("cors_origins", _origins),
    "MAX_CONNECTIONS_PER_USER": ("max_connections_per_user", lambda n, r: _int(n, r, 1, 10_000)),
    "PRESENCE_GRACE": ("presence_grace", lambda n, r: _float(n, r, 0, 3600)),
    "CHANNELS_CLAIM": ("channels_claim", lambda n, r: r.strip()),
    "HEARTBEAT_INTERVAL": ("heartbeat_interval", lambda n, r: _float(n, r, 0.05, 300)),
    "ENABLE_SSE": ("enable_sse", _bool),
    "ENABLE_COMPRESSION": ("enable_compression", _bool),
    "DETACH_IDLE_STREAMS": ("detach_idle_streams", _bool),
    "AUTH0_DOMAIN": ("auth0_domain", lambda n, r: r.strip()),
    "AUTH0_AUDIENCE": ("auth0_audience", lambda n, r: r.strip()),
    "JWKS_URL": ("jwks_url", lambda n, r: r.strip()),
    "JWT_ISSUER": ("jwt_issuer", lambda n, r: r.strip()),
    "RATE_LIMIT_CONNECT": ("rate_limit_connect", _limit),
    "RATE_LIMIT_PUBLISH": ("rate_limit_publish", _limit),
    "RATE_LIMIT_POLL": ("rate_limit_poll", _limit),
    "HISTORY_MAXLEN": ("history_maxlen", lambda n, r: _int(n, r, 1, 1_000_000)),
    "HISTORY_TTL": ("history_ttl", lambda n, r: _int(n, r, 1, 365 * 86400)),
    "MAX_EVENT_BYTES": ("max_event_bytes", lambda n, r: _int(n, r, 64, 16 << 20)),
    "IDEMPOTENCY_WINDOW": ("idempotency_window", lambda n, r: _int(n, r, 1, 7 * 86400)),
    "LOG_FORMAT": ("log_format", lambda n, r: _choice(n, r, ("json", "text"))),
    "METRICS_TOKEN": ("metrics_token", lambda n, r: _secret(n, r, 32)),
    "BIND": ("bind", lambda n, r: r.strip()),
    "WEB_CONCURRENCY": ("workers", lambda n, r: _int(n, r, 1, 256)),
    "SSE_QUEUE_MAX_BYTES": ("queue_max_bytes", lambda n, r: _int(n, r, 1024, 1 << 30)),
    "RECONNECT_RETRY_MS": ("reconnect_retry_ms", lambda n, r: _int(n, r, 0, 600_000)),
    "LEASE_TTL": ("lease_ttl", lambda n, r: _float(n, r, 1, 60)),
    "TRUSTED_PROXIES": ("trusted_proxies", lambda n, r: _int(n, r, 0, 5)),
    "BROADCAST_LOG_INTERVAL": ("broadcast_log_interval", lambda n, r: _float(n, r, 0.1, 3600)),
    "FANOUT_WINDOW_MS": ("fanout_window_ms", lambda n, r: _int(n, r, 0, 1000)),
    "JWKS_MIN_REFRESH": ("jwks_min_refresh", lambda n, r: _float(n, r, 0, 3600)),
    "TICKET_TTL": ("ticket_ttl", lambda n, r: _float(n, r, 1, 30)),
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


def _algorithms(name: str, raw: str) -> tuple[str, ...]:
    algs = tuple(a.strip() for a in raw.split(",") if a.strip())
    allowed = {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
    bad = [a for a in algs if a not in allowed]
    if not algs or bad:
        raise ConfigError(f"{name}: only asymmetric algorithms are allowed ({', '.join(sorted(allowed))}), got {raw!r}")
    return algs


def load(env: Mapping[str, str] | None = None, **overrides: object) -> Settings:
    """Read the settings from `env` (default: os.environ), then apply overrides."""
    env = os.environ if env is None else env
    values = parse(env, tuple(_PARSERS))
    if env.get("JWT_ALGORITHMS"):
        values["jwt_algorithms"] = _algorithms("JWT_ALGORITHMS", env["JWT_ALGORITHMS"])
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
    return _int("WEB_CONCURRENCY", raw, 1, 256)


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
    public = [part.strip() for part in s.bind.split(",") if part.strip() and not _private_bind(part)]
    if not public:
        return out
    return out + [
        f"TRUSTED_PROXIES={s.trusted_proxies} on a public bind ({', '.join(public)}): anyone who reaches it directly "
        "sets X-Forwarded-For and escapes per-address limits; bind to loopback or a private address behind the proxy"
    ]


def _private_bind(part: str) -> bool:
    host = bind_host(part)
    if host is None or is_loopback_host(host):
        return True
    try:
        ip = ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return False  # a name: it may resolve to anything
    return ip.is_private and not ip.is_unspecified  # 0.0.0.0 and :: are every interface


def is_loopback_host(host: str) -> bool:
    """True for `localhost` and loopback IP literals (127.0.0.0/8, ::1, ::ffff:127.x); a name like
    `127.evil.example` is not an address, so it is not loopback."""
    host = host.strip()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if host.lower() == "localhost":
        return True
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return ip.is_loopback or (mapped is not None and mapped.is_loopback)


def bind_host(part: str) -> str | None:
    """The host of one gunicorn bind (`host:port`, `[v6]:port`, bare host); None for a unix socket."""
    part = part.strip()
    if part.startswith("unix:"):
        return None
    if part.startswith("tcp://"):
        part = part[len("tcp://"):]
    if part.startswith("["):
        return part[: part.find("]") + 1] if "]" in part else part
    if part.count(":") > 1:  # a bare IPv6 address
        return part
    return part.rsplit(":", 1)[0] if ":" in part else part


def is_loopback_bind(bind: str) -> bool:
    """True when every address in a gunicorn-style bind list is loopback or a unix socket."""
    hosts = [bind_host(part) for part in bind.split(",") if part.strip()]
    return bool(hosts) and all(host is None or is_loopback_host(host) for host in hosts)
