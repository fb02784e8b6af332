"""`chatgenius-realtime`: what an operator does by hand (serve, check the configuration, mint a dev token).

    chatgenius-realtime serve           the embedded server (python app.py's; production runs gunicorn)
    chatgenius-realtime check-config    read the environment as a worker would; one line, exit 1 if bad
    chatgenius-realtime dev-token       ask a dev-mode service (AUTH_MODE=dev) for a token; print it
"""

from gevent import monkey

monkey.patch_all()  # `serve` runs gevent's server; patch before anything opens a socket

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import urllib.error  # noqa: E402
import urllib.request  # noqa: E402
from collections.abc import Mapping, Sequence  # noqa: E402
from urllib.parse import urlsplit, urlunsplit  # noqa: E402

from . import config  # noqa: E402


def check_config(env: Mapping[str, str] | None = None) -> int:
    """Load the settings as gunicorn's workers do (AUTH_MODE defaults to auth0) and summarise them."""
    try:
        s = config.load(env)
    except config.ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 1
    if s.redis_cluster_nodes:
        bus = "redis cluster " + ",".join(f"{h}:{p}" for h, p in s.redis_cluster_nodes) + f" ({s.redis_cluster_shards} shards)"
    elif s.redis_sentinels:
        bus = "redis via sentinels " + ",".join(f"{h}:{p}" for h, p in s.redis_sentinels) + f" (master {s.redis_sentinel_master})"
    elif s.redis_url:
        bus = f"redis {_without_password(s.redis_url)}"
    else:
        bus = "memory (one process only)"
    auth = "dev (tokens minted by the service)" if s.auth_mode == "dev" else f"auth0 (issuer {s.issuer}, audience {s.auth0_audience})"
    print(f"config ok: bind {s.bind}, workers {s.workers}, bus {bus}, auth {auth}, "
          f"SSE {'on' if s.enable_sse else 'off'}, compression {'on' if s.enable_compression else 'off'}")
    return 0


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username or ''}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def dev_token(url: str, sub: str, channels: Sequence[str], permissions: Sequence[str], ttl: int) -> int:
    """POST /dev/token on a running dev-mode service and print the token alone (for `TOKEN=$(...)`)."""
    body = json.dumps({"sub": sub, "channels": list(channels), "permissions": list(permissions), "ttl": ttl}).encode()
    if urlsplit(url).scheme not in ("http", "https"):
        print(f"dev-token: --url must be http:// or https://, got {url!r}", file=sys.stderr)
        return 1
    req = urllib.request.Request(url.rstrip("/") + "/dev/token", data=body, headers={"Content-Type": "application/json"})  # noqa: S310
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 (scheme checked above)
            print(json.load(resp)["token"])
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace").strip()
        print(f"dev-token: {req.full_url} answered {exc.code}: {detail} (is the service in AUTH_MODE=dev?)", file=sys.stderr)
        return 1
    except (OSError, ValueError, KeyError) as exc:
        print(f"dev-token: no token from {req.full_url}: {exc}", file=sys.stderr)
        return 1
    return 0


def parser() -> argparse.ArgumentParser:
    """The command line of chatgenius-realtime: serve, check-config, dev-token."""
    p = argparse.ArgumentParser(prog="chatgenius-realtime", description="ChatGenius realtime: SSE and long-polling for ChatGenius.")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="run the embedded server (in-memory bus and dev auth unless configured; BIND, default 127.0.0.1:8000)")
    sub.add_parser("check-config", help="check the environment's settings the way a gunicorn worker reads them")
    tok = sub.add_parser("dev-token", help="mint a token from a running service in AUTH_MODE=dev and print it")
    tok.add_argument("--url", default="http://127.0.0.1:8000", help="the service (default %(default)s)")
    tok.add_argument("--sub", default="dev", help="the token's subject, i.e. the user id (default %(default)s)")
    tok.add_argument("--channel", action="append", default=[], metavar="PATTERN", help="a channel pattern it may read (repeatable)")
    tok.add_argument("--permission", action="append", default=[], metavar="NAME",
                     help="publish:events or admin:sse (repeatable)")
    tok.add_argument("--ttl", type=int, default=3600, help="seconds the token lives (default %(default)s)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; the return value is the process' exit status."""
    args = parser().parse_args(argv)
    if args.command == "serve":
        from .embedded import serve

        return serve()
    if args.command == "check-config":
        return check_config()
    return dev_token(args.url, args.sub, args.channel, args.permission, args.ttl)
