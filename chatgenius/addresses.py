"""Which bind addresses and hosts are loopback or private: the checks behind dev mode's and
TRUSTED_PROXIES' refusals and JWKS_URL's plain-http exception."""

from __future__ import annotations

import ipaddress


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
        part = part[len("tcp://") :]
    if part.startswith("["):
        return part[: part.find("]") + 1] if "]" in part else part
    if part.count(":") > 1:  # a bare IPv6 address
        return part
    return part.rsplit(":", 1)[0] if ":" in part else part


def is_loopback_bind(bind: str) -> bool:
    """True when every address in a gunicorn-style bind list is loopback or a unix socket."""
    hosts = [bind_host(part) for part in bind.split(",") if part.strip()]
    return bool(hosts) and all(host is None or is_loopback_host(host) for host in hosts)


def is_private_bind(part: str) -> bool:
    """True when one bind is reachable only from this machine or a private network (unix, loopback,
    RFC 1918 and the like): where trusting a proxy's X-Forwarded-For is safe."""
    host = bind_host(part)
    if host is None or is_loopback_host(host):
        return True
    try:
        ip = ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return False  # a name: it may resolve to anything
    return ip.is_private and not ip.is_unspecified  # 0.0.0.0 and :: are every interface
