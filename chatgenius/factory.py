"""create_app(): the table of contents of the service."""

from __future__ import annotations

from collections.abc import Mapping

from flask import Flask

from . import config, log
from .auth import DevIssuer, KeySource, Verifier, http_fetcher
from .bus.base import EventBus
from .bus.memory import MemoryBus
from .bus.redis import RedisBus, make_clients
from .service import Realtime
from .web import dev, errors, ops, poll, publish, static, stream


def build_bus(settings: config.Settings, realtime_frame) -> EventBus:
    """The Redis bus when REDIS_URL or sentinels are set, else the in-process one."""
    if settings.redis_url or settings.redis_sentinels:
        client, feed = make_clients(settings.redis_url, settings.redis_sentinels, settings.redis_sentinel_master)
        return RedisBus(
            client, feed, settings.history_maxlen, settings.history_ttl, realtime_frame,
            ping_interval=min(5.0, max(0.5, settings.heartbeat_interval)),
        )
    return MemoryBus(settings.history_maxlen, settings.history_ttl)


def build_verifier(settings: config.Settings, bus: EventBus) -> tuple[Verifier, DevIssuer | None]:
    """One verification path; dev mode only swaps where the keys come from."""
    if settings.auth_mode == "dev":
        dev = DevIssuer(bus.setnx, settings.channels_claim)
        keys = KeySource(dev.jwks, min_refresh=0.0)
        return Verifier(keys, DevIssuer.ISSUER, DevIssuer.AUDIENCE, ["RS256"], settings.channels_claim), dev
    keys = KeySource(http_fetcher(settings.jwks_endpoint))
    keys.refresh()
    return Verifier(keys, settings.issuer, settings.auth0_audience, settings.jwt_algorithms, settings.channels_claim), None


def create_app(settings: config.Settings | None = None, env: Mapping[str, str] | None = None) -> Flask:
    settings = settings or config.load(env)
    log.setup(settings.log_level)
    app = Flask(__name__, static_folder=None)
    app.json.sort_keys = False  # type: ignore[attr-defined]

    holder: dict[str, Realtime] = {}
    bus = build_bus(settings, lambda sub: holder["rt"].reconnect_frame(sub))
    verifier, dev_issuer = build_verifier(settings, bus)
    rt = holder["rt"] = Realtime(settings, bus, verifier, dev_issuer)
    app.extensions["chatgenius"] = rt

    for module in (errors, ops, stream, poll, publish, dev, static):
        app.register_blueprint(module.bp)
    bus.start()
    return app
