"""One parser per kind of setting value: each names the variable in its ConfigError.

config.py's table maps every environment variable to one of these; they take the
variable's name and its raw text and return the typed value, or raise the one line
an operator reads at start-up.
"""

from __future__ import annotations

import re

from limits import parse_many

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
_ALGORITHMS = {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}


class ConfigError(ValueError):
    """A setting is missing or malformed; the message is the one line to print."""


def boolean(name: str, raw: str) -> bool:
    """A switch: 1/true/yes/on or 0/false/no/off, so a typo is refused rather than read as false."""
    low = raw.strip().lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise ConfigError(f"{name}: expected true or false, got {raw!r}")


def integer(name: str, raw: str, low: int, high: int) -> int:
    """An integer within [low, high]: a bound keeps a zero or a stray digit from reaching production."""
    try:
        value = int(raw.strip())
    except ValueError:
        raise ConfigError(f"{name}: expected an integer, got {raw!r}") from None
    if not low <= value <= high:
        raise ConfigError(f"{name}: must be between {low} and {high}, got {value}")
    return value


def number(name: str, raw: str, low: float, high: float) -> float:
    """A number of seconds (or similar) within [low, high]."""
    try:
        value = float(raw.strip())
    except ValueError:
        raise ConfigError(f"{name}: expected a number, got {raw!r}") from None
    if not low <= value <= high:
        raise ConfigError(f"{name}: must be between {low} and {high}, got {value}")
    return value


def rate_limits(name: str, raw: str) -> str:
    """Checked by `limits`, the parser flask-limiter and the publish quota use on this very string.

    Several limits are joined by `;`, `,` or `|` (`10/minute;100/hour`), each enforced; anything
    `limits` cannot parse (`10/minute 5/hour`) would make flask-limiter enforce nothing at all.
    """
    try:
        items = parse_many(raw)
    except ValueError:
        items = []
    if not items or any(item.amount < 1 for item in items):
        raise ConfigError(f"{name}: expected rate limits like '30/minute' or '10/second;300/hour' (joined by ';', ',' or '|'), got {raw!r}")
    return raw.strip()


def choice(name: str, raw: str, allowed: tuple[str, ...]) -> str:
    """One of `allowed`, case-insensitive, returned lower-cased."""
    value = raw.strip().lower()
    if value not in allowed:
        raise ConfigError(f"{name}: expected {' or '.join(allowed)}, got {raw!r}")
    return value


def secret(name: str, raw: str, min_length: int) -> str:
    """A credential long enough to resist guessing; the error never echoes the value."""
    value = raw.strip()
    if len(value) < min_length or not re.fullmatch(r"[A-Za-z0-9._~+/=-]+", value):
        raise ConfigError(
            f"{name}: expected at least {min_length} characters of [A-Za-z0-9._~+/=-] "
            "(e.g. from `openssl rand -hex 32`); the value is not shown"
        )
    return value


def redis_url(name: str, raw: str) -> str:
    """A URL redis-py can open (redis://, rediss:// or unix://), checked before the first connection."""
    if not re.match(r"^(redis|rediss|unix)://", raw):
        raise ConfigError(f"{name}: expected redis://, rediss:// or unix://, got {raw!r}")
    return raw


def sentinels(name: str, raw: str) -> tuple[tuple[str, int], ...]:
    """`host:port[,host:port]` of the Redis Sentinels to ask for the master."""
    out = []
    for part in filter(None, (p.strip() for p in raw.split(","))):
        host, _, port = part.rpartition(":")
        if not host or not port.isdigit():
            raise ConfigError(f"{name}: expected host:port[,host:port], got {raw!r}")
        out.append((host, int(port)))
    return tuple(out)


def cluster_nodes(name: str, raw: str) -> tuple[tuple[str, int], ...]:
    """`host:port[,host:port]` of Redis Cluster nodes: where the client starts looking, not the whole cluster."""
    nodes = sentinels(name, raw)
    if not nodes:
        raise ConfigError(f"{name}: expected host:port[,host:port], got {raw!r}")
    return nodes


def cluster_shards(name: str, raw: str) -> int:
    """The cluster bus' shard count, 1..14: bounds the cursor at 197 bytes (shard_cursor.py)."""
    return integer(name, raw, 1, 14)


def origins(name: str, raw: str) -> tuple[str, ...]:
    """Comma-separated CORS origins (or `*`), without trailing slashes, as browsers send them."""
    found = tuple(o.strip().rstrip("/") for o in raw.split(",") if o.strip())
    for origin in found:
        if origin != "*" and not re.fullmatch(r"https?://[^/\s]+", origin):
            raise ConfigError(f"{name}: {origin!r} is not an origin like https://app.example.com")
    return found


def algorithms(name: str, raw: str) -> tuple[str, ...]:
    """JWT algorithms, asymmetric only: an HS* or `none` entry would let a public key sign tokens."""
    algs = tuple(a.strip() for a in raw.split(",") if a.strip())
    bad = [a for a in algs if a not in _ALGORITHMS]
    if not algs or bad:
        raise ConfigError(f"{name}: only asymmetric algorithms are allowed ({', '.join(sorted(_ALGORITHMS))}), got {raw!r}")
    return algs
