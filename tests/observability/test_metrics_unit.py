"""Metrics pieces without a server: frame timestamps, quantiles, refusal classes, bounded labels,
and one in-process app counting a stream from open to close (single-process registry)."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from chatgenius import close, config
from chatgenius.events import draft, envelope_json
from chatgenius.factory import create_app
from chatgenius.metrics import Labelled, WorkersCollector, quantile
from chatgenius.sse import durable_frame, ephemeral_frame
from chatgenius.telemetry import LATENCY_SAMPLES, frame_ts, refusal

CHAN = "channel:general"


def test_frame_ts_reads_the_envelope_stamp_not_a_ts_inside_data() -> None:
    d = draft({"channel": CHAN, "type": "message.created", "data": {"ts": 1.5, "text": '"ts":2}'}}, 65536, now=1764432000.123456)
    assert frame_ts(durable_frame("e-1", d.type, envelope_json("e-1", d.body))) == 1764432000.123456
    typing = draft({"channel": CHAN, "type": "user.typing", "data": {}}, 65536, now=42.5)
    assert frame_ts(ephemeral_frame(typing.type, envelope_json(None, typing.body))) == 42.5
    assert frame_ts(b"event: system.reconnect\ndata: {\"retry_ms\":100}\n\n") is None
    assert frame_ts(b'data: {"ts":oops}\n\n') is None


@pytest.mark.parametrize(
    ("q", "buckets", "expected"),
    [
        (0.5, [(0.1, 0), (1.0, 10), (float("inf"), 10)], 0.55),
        (0.99, [(0.1, 10), (float("inf"), 10)], 0.099),
        (0.99, [(0.1, 0), (1.0, 0), (float("inf"), 10)], 1.0),  # beyond the last bound: the last bound
        (0.5, [(0.1, 0), (float("inf"), 0)], None),
        (0.5, [], None),
    ],
)
def test_quantile_interpolates_like_histogram_quantile(q, buckets, expected) -> None:
    got = quantile(q, buckets)
    assert got == pytest.approx(expected) if expected is not None else got is None


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        (401, "unauthorized", ("rejection", "unauthorized")),
        (403, "forbidden", ("rejection", "forbidden")),
        (429, "rate_limited", ("rejection", "rate_limit")),
        (429, "connection_limit", ("rejection", "connection_limit")),
        (400, "bad_channels", ("rejection", "bad_input")),
        (413, "too_large", ("rejection", "bad_input")),
        (503, "sse_disabled", ("rejection", "unavailable")),
        (503, "draining", ("rejection", "unavailable")),
        (503, "bus_unavailable", ("error", "bus_unavailable")),
        (500, "internal", ("error", "internal")),
        (302, "", None),
    ],
)
def test_every_error_answer_is_a_rejection_or_an_error(status, code, expected) -> None:
    assert refusal(status, code) == expected


def test_labelled_binds_known_values_and_folds_unknown_ones_beyond_the_limit() -> None:
    registry = CollectorRegistry()
    family = Labelled(Counter("t_total", "t", ["reason"], registry=registry), ["a", "b"], limit=3)
    family["a"].inc()
    family["new"].inc()
    family["newer"].inc()
    family["newest"].inc(2)
    values = {s.labels["reason"]: s.value for s in next(iter(registry.collect())).samples if s.name == "t_total"}
    assert values == {"a": 1, "b": 0, "new": 1, "other": 3}


def test_scrape_skips_the_file_a_starting_worker_has_not_sized_yet(tmp_path: Path) -> None:
    (tmp_path / "counter_4242.db").touch()  # what a worker's first metric leaves for an instant
    with pytest.raises(struct.error):
        list(MultiProcessCollector(None, path=str(tmp_path)).collect())
    assert list(WorkersCollector(None, path=str(tmp_path)).collect()) == []


# -- one process, one registry ---------------------------------------------------------------


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch) -> Iterator[Flask]:
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    app = create_app(config.load({"AUTH_MODE": "dev", "BIND": "127.0.0.1:9", "HEARTBEAT_INTERVAL": "0.2"}))
    yield app
    close(app)


def mint(client: FlaskClient, sub: str, permissions: list[str]) -> dict[str, str]:
    body = {"sub": sub, "channels": ["channel:*"], "permissions": permissions}
    return {"Authorization": "Bearer " + client.post("/dev/token", json=body).json["token"]}


def test_in_process_app_counts_a_stream_from_open_to_close(app: Flask) -> None:
    client = app.test_client()
    admin = mint(client, "alice", ["publish:events", "admin:sse"])

    def stats() -> dict:
        resp = client.get("/admin/stats", headers=admin)
        assert resp.status_code == 200, resp.json
        return resp.json

    resp = client.get(f"/stream?channels={CHAN}", headers=admin, buffered=False)
    body = iter(resp.response)
    writes: list[bytes] = []

    def until_heartbeat() -> None:
        """Read writes up to a heartbeat: the loop came back from each write, so it has been counted."""
        while not (chunk := next(body)).startswith(b": hb"):
            writes.append(chunk)

    try:
        assert b"system.connected" in next(body)
        now = stats()
        assert (now["connections"], now["users"], now["workers"], now["connections_opened"]) == (1, 1, 1, 1)
        assert now["bus"]["reader_up"] == 1 and list(now["memory_bytes"].values())[0] > 1e6
        assert client.post("/events", json={"channel": CHAN, "type": "message.created", "data": {}}, headers=admin).status_code == 201
        until_heartbeat()
        frames = b"".join(writes).count(b"\nevent: ")  # the message, and this user's own user.presence
        assert b"event: message.created" in b"".join(writes)
        now = stats()
        assert now["events_published"] == 1 and now["events_published_by_type"] == {"message.created": 1}
        assert now["events_delivered"] == {"live": frames, "replay": 0}
        assert now["broadcast_latency_seconds"]["count"] == len(writes) and 0 <= now["broadcast_latency_seconds"]["p99"] < 1
    finally:
        resp.close()  # the client goes away while a heartbeat is in flight
    now = stats()
    assert (now["connections"], now["users"]) == (0, 0)
    assert now["connections_closed"]["client_closed"] == 1 and now["heartbeat_write_failures"] == 1
    assert now["connection_duration_seconds"]["count"] == 1

    families = {f.name: f for f in text_string_to_metric_families(client.get("/metrics", headers=admin).text)}
    assert families["chatgenius_connections_active"].samples[0].value == 0
    requests = families["flask_http_request_duration_seconds"].samples
    rules = {s.labels["url_rule"] for s in requests}
    # The publish (a token this process verified already) was answered before Flask (web/publish_fast.py):
    # counted as an event above, not by the exporter's per-request histogram.
    assert "/admin/stats" in rules and "/events" not in rules and "/stream" not in rules


def test_admin_stats_and_metrics_need_the_admin_permission(app: Flask) -> None:
    client = app.test_client()
    bob = mint(client, "bob", ["publish:events"])
    for path in ("/admin/stats", "/metrics"):
        resp = client.get(path, headers=bob)
        assert resp.status_code == 403 and resp.json["error"] == "forbidden"
        resp = client.get(path)
        assert resp.status_code == 401 and resp.json["error"] == "unauthorized"
    stats = client.get("/admin/stats", headers=mint(client, "root", ["admin:sse"])).json
    assert stats["rejections"]["forbidden"] == 2 and stats["rejections"]["unauthorized"] == 2
    assert stats["auth_failures"]["missing"] == 2


def test_admin_page_is_served(app: Flask) -> None:
    client = app.test_client()
    page = client.get("/static/admin.html")
    assert page.status_code == 200 and b'src="/static/admin.js"' in page.data and b"<canvas" in page.data
    page.close()
    script = client.get("/static/admin.js")
    assert script.status_code == 200 and b"/admin/stats" in script.data and b"/dev/token" in script.data
    script.close()


def test_deliveries_are_batched_and_latency_sampled_under_heavy_fan_out(app: Flask) -> None:
    tel = app.extensions["chatgenius.telemetry"]
    tel.stop()  # the test drives sampling itself
    d = draft({"channel": CHAN, "type": "message.created", "data": {}}, 65536)
    frame = durable_frame("e-1", d.type, envelope_json("e-1", d.body))
    start = tel.stats()
    for _ in range(5000):
        tel.stream_wrote([frame, frame])
    tel.sample()  # 5000 writes in the last second: from now on one write in 5000 / LATENCY_SAMPLES is timed
    for _ in range(5000):
        tel.stream_wrote([frame])
    for _ in range(5000):  # an event the reader wrote to idle streams itself: one write, same budget
        tel.dispatched(frame, 1000, 1000)
    now = tel.stats()
    assert now["events_delivered"]["live"] - start["events_delivered"]["live"] == 15000 + 5_000_000
    observed = now["broadcast_latency_seconds"]["count"] - start["broadcast_latency_seconds"]["count"]
    assert observed == 5000 + 2 * LATENCY_SAMPLES
