"""create_app(): the table of contents of the service."""

from __future__ import annotations

from collections.abc import Mapping

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from . import config, log, metrics
from .admin import Admin
from .auth import DevIssuer, KeySource, Verifier, http_fetcher
from .bus.base import EventBus
from .bus.control_memory import MemoryControl
from .bus.control_redis import RedisControl
from .bus.memory import MemoryBus
from .bus.presence_cluster import ClusterPresence
from .bus.presence_memory import MemoryPresence
from .bus.presence_redis import RedisPresence
from .bus.redis import RedisBus, make_clients
from .bus.redis_cluster import RedisClusterBus, make_cluster_client
from .chat import Chat
from .control import ControlPlane
from .flags import RuntimeFlags
from .presence import Presence
from .service import Realtime
from .state.base import SharedState
from .state.memory import MemoryState
from .state.redis import RedisState
from .state.redis_cluster import RedisClusterState
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


def build_bus(settings: config.Settings, realtime_frame) -> EventBus:
    """The Redis Cluster bus when REDIS_CLUSTER_NODES is set, the Redis bus when REDIS_URL or sentinels are, else the in-process one."""
    if settings.redis_cluster_nodes:
        return RedisClusterBus(
            make_cluster_client(settings.redis_cluster_nodes), settings.redis_cluster_shards, settings.history_maxlen,
            settings.history_ttl, realtime_frame, idempotency_window=settings.idempotency_window,
        )  # fmt: skip
    if settings.redis_url or settings.redis_sentinels:
        client, feed = make_clients(settings.redis_url, settings.redis_sentinels, settings.redis_sentinel_master)
        return RedisBus(
            client, feed, settings.history_maxlen, settings.history_ttl, realtime_frame,
            ping_interval=min(5.0, max(0.5, settings.heartbeat_interval)),
            idempotency_window=settings.idempotency_window,
        )
    return MemoryBus(settings.history_maxlen, settings.history_ttl, idempotency_window=settings.idempotency_window)


def build_verifier(settings: config.Settings, bus: EventBus) -> tuple[Verifier, DevIssuer | None]:
    """One verification path; dev mode only swaps where the keys come from."""
    if settings.auth_mode == "dev":
        dev = DevIssuer(bus.setnx, settings.channels_claim)
        keys = KeySource(dev.jwks, min_refresh=0.0)
        return Verifier(keys, DevIssuer.ISSUER, DevIssuer.AUDIENCE, ["RS256"], settings.channels_claim), dev
    keys = KeySource(http_fetcher(settings.jwks_endpoint), min_refresh=settings.jwks_min_refresh)
    keys.refresh()  # never fatal: an unreachable JWKS is retried on the first token (auth.KeySource)
    return Verifier(keys, settings.issuer, settings.auth0_audience, settings.jwt_algorithms, settings.channels_claim), None


def build_state(bus: EventBus) -> SharedState:
    """Tickets and connection leases live beside the bus: on its Redis (same connections), or in memory."""
    if isinstance(bus, RedisClusterBus):
        return RedisClusterState(bus.client)
    return RedisState(bus.client) if isinstance(bus, RedisBus) else MemoryState()


def build_chat(settings: config.Settings, rt: Realtime) -> tuple[Chat, Admin]:
    """Presence, the control plane and runtime flags: on the bus' Redis, or in process."""
    bus = rt.bus
    if isinstance(bus, RedisClusterBus):
        store, control_store = ClusterPresence(bus), RedisControl(bus.client)
    elif isinstance(bus, RedisBus):
        store, control_store = RedisPresence(bus), RedisControl(bus.client)
    else:
        assert isinstance(bus, MemoryBus)
        store, control_store = MemoryPresence(bus), MemoryControl()
    control = ControlPlane(bus, control_store)
    rt.stream_opened.append(control.opened)
    rt.stream_closed.append(control.closed)
    presence = Presence(store, settings.lease_ttl, settings.presence_grace)
    flags = RuntimeFlags(rt.flags, settings, control_store, lambda: control.sessions.values())
    return Chat(rt, presence, control), Admin(rt, control, flags)


def create_app(settings: config.Settings | None = None, env: Mapping[str, str] | None = None) -> Flask:
    settings = settings or config.load(env)
    log.setup(settings.log_level, settings.log_format)
    app = Flask(__name__, static_folder=None)
    app.wsgi_app = remember_start_response(app.wsgi_app)  # type: ignore[method-assign]  # streams: wire.py
    if settings.trusted_proxies:
        # Behind nginx: the client address comes from X-Forwarded-For, trusting that many hops only.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=settings.trusted_proxies, x_proto=settings.trusted_proxies)  # type: ignore[method-assign]
    app.json.sort_keys = False  # type: ignore[attr-defined]

    holder: dict[str, Realtime] = {}
    bus = build_bus(settings, lambda sub: holder["rt"].reconnect_frame(sub))
    verifier, dev_issuer = build_verifier(settings, bus)
    rt = holder["rt"] = Realtime(settings, bus, verifier, dev_issuer, build_state(bus))
    app.extensions["chatgenius"] = rt
    telemetry = app.extensions["chatgenius.telemetry"] = Telemetry(rt, metrics.Metrics(), settings.broadcast_log_interval)
    chat_api, admin_api = app.extensions["chatgenius.chat"], app.extensions["chatgenius.admin"] = build_chat(settings, rt)

    # After-request hooks run in reverse order of registration: compression's runs last, on the final body.
    app.register_blueprint(compression.bp)
    app.register_blueprint(observe.bp)  # first, so the request id is bound before any other hook logs
    methods.install(app)  # before the exporter: a made-up method would be a new family of series
    # Every endpoint but health needs a user; a scraper may use METRICS_TOKEN instead (it does not expire).
    metrics.export(app, telemetry.metrics, guard=admin_stats.metrics_guard(settings.metrics_token))
    security.install(app, settings)
    ratelimit.install(app, settings, bus.client.connection_pool if isinstance(bus, RedisBus) else None)
    for module in (errors, ops, stream, poll, publish, tickets, dev, static, apidoc, admin_stats, chat_web, admin_web):
        app.register_blueprint(module.bp)
    # Outermost: the publisher's usual POST /events is answered before Flask (web/publish_fast.py).
    app.wsgi_app = FastPublish(app.wsgi_app, rt, telemetry, security.max_body_bytes(settings))  # type: ignore[method-assign]
    bus.start()
    bus.hub.start_ticker(min(1.0, max(0.05, settings.heartbeat_interval / 4)))
    telemetry.start()
    chat_api.presence.start()
    admin_api.flags.start()
    return app
