"""create_app(): the table of contents of the service."""

from __future__ import annotations

from collections.abc import Mapping

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from . import backends, config, log, metrics
from .admin import Admin
from .auth import DevIssuer, KeySource, Verifier, http_fetcher
from .backends import Backends
from .chat import Chat
from .control.service import ControlPlane
from .flags import RuntimeFlags
from .lifecycle import Lifecycle
from .presence.service import Presence
from .service import Realtime
from .state.base import SharedState
from .streams import Streams
from .telemetry import Telemetry
from .web import admin as admin_web
from .web import (
    admin_stats,
    apidoc,
    compression,
    dev,
    errors,
    methods,
    observe,
    ops,
    poll,
    publish,
    ratelimit,
    security,
    static,
    stream,
    tickets,
)
from .web import chat as chat_web
from .web.publish_fast import FastPublish
from .wire import remember_start_response


def build_verifier(settings: config.Settings, state: SharedState) -> tuple[Verifier, DevIssuer | None]:
    """One verification path; dev mode only swaps where the keys come from."""
    if settings.auth_mode == "dev":
        dev = DevIssuer(state.setnx, settings.channels_claim)
        keys = KeySource(dev.jwks, min_refresh=0.0)
        return Verifier(keys, DevIssuer.ISSUER, DevIssuer.AUDIENCE, ["RS256"], settings.channels_claim), dev
    keys = KeySource(http_fetcher(settings.jwks_endpoint), min_refresh=settings.jwks_min_refresh)
    keys.refresh()  # never fatal: an unreachable JWKS is retried on the first token (auth.KeySource)
    return Verifier(keys, settings.issuer, settings.auth0_audience, settings.jwt_algorithms, settings.channels_claim), None


def build_chat(settings: config.Settings, rt: Realtime, family: Backends) -> tuple[Chat, Admin]:
    """Presence, the control plane and runtime flags over the family's presence and control stores."""
    control = ControlPlane(family.control)
    presence = Presence(family.presence, settings.lease_ttl, settings.presence_grace)
    rt.streams.observe(presence)
    flags = RuntimeFlags(rt.flags, settings, family.control, rt.streams)
    return Chat(rt, presence, control), Admin(rt, control, flags)


def create_app(settings: config.Settings | None = None, env: Mapping[str, str] | None = None) -> Flask:
    """The WSGI app: settings, the backend family, verifier, Realtime and the blueprints, started."""
    settings = settings or config.load(env)
    log.setup(settings.log_level, settings.log_format)
    app = Flask(__name__, static_folder=None)
    app.wsgi_app = remember_start_response(app.wsgi_app)  # type: ignore[method-assign]  # streams: wire.py
    if settings.trusted_proxies:
        # Behind nginx: the client address comes from X-Forwarded-For, trusting that many hops only.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=settings.trusted_proxies, x_proto=settings.trusted_proxies)  # type: ignore[method-assign]
    app.json.sort_keys = False  # type: ignore[attr-defined]

    family = backends.build(settings)  # memory or Redis, picked once (backends.choose)
    bus = family.bus
    verifier, dev_issuer = build_verifier(settings, family.state)
    streams = Streams()
    telemetry = app.extensions["chatgenius.telemetry"] = Telemetry(bus, streams, metrics.Metrics(), settings.broadcast_log_interval)
    bus.hub.observe_dispatch(telemetry.dispatched)
    rt = Realtime(
        settings, bus, verifier, dev_issuer, family.state,
        on_write=telemetry.stream_wrote, published=[telemetry.events_published], streams=streams,
    )
    streams.observe(telemetry)
    app.extensions["chatgenius"] = rt
    chat_api, admin_api = app.extensions["chatgenius.chat"], app.extensions["chatgenius.admin"] = build_chat(settings, rt, family)

    # After-request hooks run in reverse order of registration: compression's runs last, on the final body.
    app.register_blueprint(compression.bp)
    app.register_blueprint(observe.bp)  # first, so the request id is bound before any other hook logs
    methods.install(app)  # before the exporter: a made-up method would be a new family of series
    # Every endpoint but health needs a user; a scraper may use METRICS_TOKEN instead (it does not expire).
    metrics.export(app, telemetry.metrics, guard=admin_stats.metrics_guard(settings.metrics_token))
    security.install(app, settings)
    limiter = ratelimit.install(app, settings, family.limiter_storage)
    for module in (errors, ops, stream, poll, publish, tickets, dev, static, apidoc, admin_stats, chat_web, admin_web):
        app.register_blueprint(module.bp)
    # Outermost: the publisher's usual POST /events is answered before Flask (web/publish_fast.py).
    fast = FastPublish(app.wsgi_app, rt, telemetry, security.max_body_bytes(settings))
    app.wsgi_app = app.extensions["chatgenius.fast_publish"] = fast  # type: ignore[method-assign]
    life = app.extensions["chatgenius.lifecycle"] = Lifecycle()
    life.on_close(lambda: ratelimit.close(limiter))
    start(life, settings, rt, telemetry, chat_api, admin_api)
    return app


def start(life: Lifecycle, settings: config.Settings, rt: Realtime, telemetry: Telemetry, chat_api: Chat, admin_api: Admin) -> None:
    """Start the bus reader, the hub's ticker and the background loops; `life.close()` stops them all."""
    bus = rt.bus
    bus.start()
    life.on_close(bus.close)  # last: the loops above it may still use its connections while stopping
    bus.hub.start_ticker(min(1.0, max(0.05, settings.heartbeat_interval / 4)))
    life.on_close(bus.hub.stop_ticker)
    telemetry.start()
    life.on_close(telemetry.stop)
    chat_api.presence.start()
    life.on_close(chat_api.presence.close)
    admin_api.flags.start()
    life.on_close(admin_api.flags.close)
    life.on_close(rt.leases.close)  # its refresher starts with the first lease
