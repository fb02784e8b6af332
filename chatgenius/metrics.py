"""Prometheus metrics: every quantity of the contract's Operators section, summed over workers.

Under gunicorn `PROMETHEUS_MULTIPROC_DIR` is set (gunicorn.conf.py creates and wipes
it): each worker writes its values to mmap files there, and `/metrics`
(prometheus-flask-exporter's multiprocess endpoint) sums every file at scrape time.
Each gauge says how it is combined; the `live*` modes drop a worker's files when
gunicorn's `child_exit` marks it dead, so a killed worker's connections do not
linger. Without the variable (`python app.py`) one private registry
serves everything; a registry per app keeps test apps apart.

No user or channel label anywhere: their number is unbounded. Labelled
children are bound once here, so recording on the hot path is an attribute
access and an add, never a label lookup.
"""

from __future__ import annotations

import glob
import os
import struct
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector

from .events import CATALOG

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
DURATION_BUCKETS = (1, 5, 15, 60, 300, 900, 1800, 3600, 7200, 14400, 43200, 86400)
REPLAY_BUCKETS = (0, 1, 5, 10, 50, 100, 250, 500, 1000, 5000)
REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

AUTH_REASONS = (
    "missing", "malformed", "bad_algorithm", "no_kid", "unknown_kid", "bad_signature",
    "expired", "bad_issuer", "bad_audience", "not_yet_valid", "bad_claims", "bad_ticket", "token_in_query",
)
REJECT_REASONS = ("unauthorized", "forbidden", "bad_input", "rate_limit", "connection_limit", "unavailable")
ERROR_KINDS = ("internal", "stream", "bus_unavailable", "bus_reader")
# Who parsed a POST /events: gunicorn_worker (server), web/publish_fast before Flask (wsgi), or Flask.
PUBLISH_PATHS = ("server", "wsgi", "flask")
CLOSE_REASONS = ("client_closed", "token_expiring", "slow_consumer", "drain", "bus_lost", "shutdown", "admin_kick", "sse_disabled")


def multiprocess_dir() -> str | None:
    """Where gunicorn's workers write their metric files, or None in a single process."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class Labelled:
    """One label's children bound up front; a value not known in advance is bound once, at most `limit` in all."""

    def __init__(self, metric: Any, known: Iterable[str], limit: int = 32) -> None:
        self._metric = metric
        self._limit = limit
        self._children = {value: metric.labels(value) for value in known}

    def __getitem__(self, value: str) -> Any:
        child = self._children.get(value)
        if child is None:
            if len(self._children) >= self._limit:
                value = "other"  # a bug upstream must not become unbounded cardinality
            child = self._children.get(value)
            if child is None:
                child = self._children[value] = self._metric.labels(value)
        return child


class Metrics:
    """The service's own metrics (names and meanings: docs/OPERATIONS.md, "Metrics and alerts")."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = r = registry or CollectorRegistry()
        # Streams and users: live gauges, summed over live workers.
        self.connections = Gauge(
            "chatgenius_connections_active", "Open SSE streams", registry=r, multiprocess_mode="livesum")
        self.users = Gauge(
            "chatgenius_users_connected", "Users with at least one open stream (counted per worker, summed)",
            registry=r, multiprocess_mode="livesum")
        self.capacity = Gauge(
            "chatgenius_connections_capacity", "Streams the workers accept (gunicorn worker_connections, summed)",
            registry=r, multiprocess_mode="livesum")
        self.opened = Counter("chatgenius_connections_opened_total", "SSE streams opened", registry=r)
        self.reconnections = Counter(
            "chatgenius_reconnections_total", "Streams opened with a cursor (Last-Event-ID or last_event_id)", registry=r)
        self.closed = Labelled(
            Counter("chatgenius_connections_closed_total", "SSE streams ended, by reason", ["reason"], registry=r),
            CLOSE_REASONS)
        self.duration = Histogram(
            "chatgenius_connection_duration_seconds", "Lifetime of ended SSE streams",
            registry=r, buckets=DURATION_BUCKETS)
        # Events.
        self.latency = Histogram(
            "chatgenius_broadcast_latency_seconds",
            "Publish time stamped in the envelope to its write on a stream (oldest event of each write)",
            registry=r, buckets=LATENCY_BUCKETS)
        published = Counter("chatgenius_events_published_total", "Events accepted by POST /events, by type", ["type"], registry=r)
        self.published = {etype: published.labels(etype) for etype in sorted(CATALOG)}
        self.publish_requests = Labelled(
            Counter("chatgenius_publish_requests_total", "POST /events requests answered, by who parsed them", ["path"], registry=r),
            PUBLISH_PATHS)
        delivered = Counter(
            "chatgenius_events_delivered_total", "Event frames written to streams (live) or replayed at open (replay)",
            ["source"], registry=r)
        self.delivered_live = delivered.labels("live")
        self.delivered_replay = delivered.labels("replay")
        self.replay_size = Histogram(
            "chatgenius_replay_events", "Events replayed to a stream opened with a cursor", registry=r, buckets=REPLAY_BUCKETS)
        self.resets = Counter("chatgenius_resets_total", "Streams that began with system.reset (history lost)", registry=r)
        self.slow_consumers = Counter(
            "chatgenius_slow_consumer_disconnects_total", "Streams ended because their buffer filled", registry=r)
        self.heartbeat_failures = Counter(
            "chatgenius_heartbeat_write_failures_total", "Streams found dead by a failed heartbeat write", registry=r)
        # Failures and refusals.
        self.errors = Labelled(Counter("chatgenius_errors_total", "Errors, by kind", ["kind"], registry=r), ERROR_KINDS)
        self.auth_failures = Labelled(
            Counter("chatgenius_auth_failures_total", "Refused credentials, by reason", ["reason"], registry=r), AUTH_REASONS)
        self.rejections = Labelled(
            Counter("chatgenius_rejections_total", "Refused requests, by reason", ["reason"], registry=r), REJECT_REASONS)
        # The bus reader and the process.
        self.reader_reconnects = Counter(
            "chatgenius_bus_reader_reconnects_total", "Times the live-feed reader lost Redis and reconnected", registry=r)
        self.reader_up = Gauge(
            "chatgenius_bus_reader_up", "1 when the worker's live feed is connected and answering (min over workers)",
            registry=r, multiprocess_mode="livemin")
        self.reader_lag = Gauge(
            "chatgenius_bus_reader_lag_seconds", "Publish to receipt by the reader, worst over the last second (max over workers)",
            registry=r, multiprocess_mode="livemax")
        self.memory = Gauge(
            "chatgenius_process_resident_memory_bytes", "Resident memory of each worker (label pid under gunicorn)",
            registry=r, multiprocess_mode="liveall")
        self.greenlets = Gauge(
            "chatgenius_greenlets", "Live greenlets per worker, counted once a minute (a leak shows as a slope)",
            registry=r, multiprocess_mode="liveall")


def export(app: Any, metrics: Metrics, guard: Callable[[Callable[..., Any]], Callable[..., Any]] | None = None) -> Any:
    """Serve `/metrics` on `app` (behind `guard`) with the exporter's request metrics.

    `/stream` is left out of them: a stream's "request duration" is its
    lifetime, which chatgenius_connection_duration_seconds measures. Requests
    are grouped by URL rule, never by path (paths hold channel names).
    """
    from prometheus_flask_exporter import PrometheusMetrics
    from prometheus_flask_exporter.multiprocess import GunicornInternalPrometheusMetrics

    options: dict[str, Any] = {
        "group_by": "url_rule", "excluded_paths": ["^/stream$"], "buckets": REQUEST_BUCKETS, "metrics_decorator": guard,
    }
    if multiprocess_dir():

        class Exporter(GunicornInternalPrometheusMetrics):
            def generate_metrics(self, accept_header: str | None = None, names: list[str] | None = None) -> tuple[str, str]:
                registry: Any = _workers_registry()
                if names:
                    registry = registry.restricted_registry(names)
                encode, content_type = choose_encoder(accept_header or "")
                return encode(registry).decode("utf-8"), content_type

        return Exporter(app, path="/metrics", **options)
    return PrometheusMetrics(app, path="/metrics", registry=metrics.registry, **options)


class WorkersCollector(MultiProcessCollector):
    """The multiprocess collector, minus a scrape-time race of prometheus_client (0.26 and before).

    The bug: prometheus/client_python#1199, "MultiProcessCollector fails
    permanently on an empty metrics file left by a killed worker" (open when
    written; the fix proposed in client_python#1207 reads an empty file as no
    values). MmapedDict creates a worker's file empty and sizes it an instant
    later; read in that instant, `read_all_values_from_file` raises struct.error
    and the whole scrape fails, every worker's metrics with it. Such a file holds
    no value yet, so it is left out, and a read that still loses the race is
    retried. A file removed between the glob and the read (a dead worker's live
    gauges, client_python#425) is skipped by `_sized` as well. Drop this class
    once the pinned prometheus_client includes the fix.
    """

    def collect(self) -> Iterable[Metric]:
        """Every worker's metric files merged; retried when a worker was mid-write to one."""
        for attempt in range(3):
            files = [f for f in glob.glob(os.path.join(self._path, "*.db")) if _sized(f)]
            try:
                return self.merge(files, accumulate=True)
            except struct.error:
                if attempt == 2:
                    raise
        return []


def _sized(path: str) -> bool:
    try:
        return os.path.getsize(path) >= 8
    except OSError:  # removed since the glob (a dead worker's live gauges)
        return False


def _workers_registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    WorkersCollector(registry)
    return registry


def collect(metrics: Metrics) -> list[Metric]:
    """Every family as `/metrics` shows it: all workers' files in multiprocess mode, else this registry."""
    registry = _workers_registry() if multiprocess_dir() else metrics.registry
    return list(registry.collect())



class _Samples:
    def __init__(self, families: Iterable[Metric]) -> None:
        self.by_name: dict[str, list[tuple[dict[str, str], float]]] = {}
        for family in families:
            for s in family.samples:
                self.by_name.setdefault(s.name, []).append((s.labels, s.value))

    def total(self, name: str) -> float:
        return sum(v for _, v in self.by_name.get(name, ()))

    def by(self, name: str, label: str) -> dict[str, float]:
        out: dict[str, float] = {}
        for labels, v in self.by_name.get(name, ()):
            key = labels.get(label, "")
            out[key] = out.get(key, 0) + v
        return out

    def histogram(self, name: str) -> dict[str, float | None]:
        cumulative = sorted((float(le), v) for le, v in self.by(name + "_bucket", "le").items())
        count = self.total(name + "_count")
        total = self.total(name + "_sum")
        return {
            "count": count,
            "mean": total / count if count else None,
            "p50": quantile(0.5, cumulative),
            "p99": quantile(0.99, cumulative),
        }


def quantile(q: float, cumulative: Sequence[tuple[float, float]]) -> float | None:
    """Prometheus' histogram_quantile over (upper bound, cumulative count) pairs, +Inf last."""
    if not cumulative or cumulative[-1][1] <= 0:
        return None
    rank = q * cumulative[-1][1]
    lower, below = 0.0, 0.0
    for upper, count in cumulative:
        if count >= rank:
            if upper == float("inf"):
                return lower
            if count == below:
                return upper
            return lower + (upper - lower) * (rank - below) / (count - below)
        lower, below = upper, count
    return lower


def snapshot(families: Iterable[Metric]) -> dict[str, Any]:
    """The same numbers as `/metrics`, summed, as one JSON-ready dict (GET /admin/stats)."""
    s = _Samples(families)
    memory = {pid or str(os.getpid()): v for pid, v in s.by("chatgenius_process_resident_memory_bytes", "pid").items()}
    return {
        "workers": len(memory),
        "connections": s.total("chatgenius_connections_active"),
        "users": s.total("chatgenius_users_connected"),
        "capacity": s.total("chatgenius_connections_capacity"),
        "connections_opened": s.total("chatgenius_connections_opened_total"),
        "connections_closed": s.by("chatgenius_connections_closed_total", "reason"),
        "reconnections": s.total("chatgenius_reconnections_total"),
        "resets": s.total("chatgenius_resets_total"),
        "events_published": s.total("chatgenius_events_published_total"),
        "events_published_by_type": {k: v for k, v in s.by("chatgenius_events_published_total", "type").items() if v},
        "events_delivered": s.by("chatgenius_events_delivered_total", "source"),
        "broadcast_latency_seconds": s.histogram("chatgenius_broadcast_latency_seconds"),
        "connection_duration_seconds": s.histogram("chatgenius_connection_duration_seconds"),
        "replay_events": s.histogram("chatgenius_replay_events"),
        "slow_consumer_disconnects": s.total("chatgenius_slow_consumer_disconnects_total"),
        "heartbeat_write_failures": s.total("chatgenius_heartbeat_write_failures_total"),
        "errors": s.by("chatgenius_errors_total", "kind"),
        "auth_failures": s.by("chatgenius_auth_failures_total", "reason"),
        "rejections": s.by("chatgenius_rejections_total", "reason"),
        "bus": {
            "reader_up": min((v for _, v in s.by_name.get("chatgenius_bus_reader_up", ())), default=None),
            "reader_lag_seconds": max((v for _, v in s.by_name.get("chatgenius_bus_reader_lag_seconds", ())), default=None),
            "reader_reconnects": s.total("chatgenius_bus_reader_reconnects_total"),
        },
        "memory_bytes": memory,
        "greenlets": {pid or str(os.getpid()): v for pid, v in s.by("chatgenius_greenlets", "pid").items()},
    }
