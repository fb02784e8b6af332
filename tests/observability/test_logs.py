"""JSON logs: credentials never written, the request id on a request's lines, errors with details,
LOG_LEVEL honoured. In-process apps here; tests/observability/test_gunicorn.py reads real worker logs."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import Iterator

import pytest
from flask import Flask
from support.procs import REPO_ROOT

from chatgenius import close, config, log
from chatgenius.factory import create_app
from chatgenius.log import JsonFormatter

CHAN = "channel:general"
JWT = "eyJhbGciOiJSUzI1NiIsImtpZCI6ImsxIn0.eyJzdWIiOiJhbGljZSIsImV4cCI6MX0.c2lnbmF0dXJlLXZhbHVl"


def format_record(message: str, args: tuple = (), **fields: object) -> str:
    record = logging.LogRecord("chatgenius", logging.INFO, __file__, 1, message, args, None)
    for key, value in fields.items():
        setattr(record, key, value)
    return JsonFormatter().format(record)


def test_tokens_and_tickets_are_redacted_in_messages_fields_and_nested_values() -> None:
    line = format_record(
        "GET /stream?ticket=%s&channels=a with Authorization: Bearer %s, then %s",
        ("tkt-secret-1", "opaque-secret-2", JWT),
        event="x",
        token="plain-secret-3",
        ticket="tkt-secret-4",
        Authorization="Bearer secret-5",
        headers={"authorization": "secret-6", "x": [JWT, "keep-me"]},
        error=f"refused {JWT} from ?access_token=secret-7",
    )
    for secret in ("tkt-secret-1", "opaque-secret-2", "plain-secret-3", "tkt-secret-4", "secret-5", "secret-6", "secret-7", "c2lnbmF0dXJl"):
        assert secret not in line
    out = json.loads(line)
    assert out["message"] == "GET /stream?ticket=[redacted]&channels=a with Authorization: Bearer [redacted], then [redacted]"
    assert out["token"] == out["ticket"] == out["Authorization"] == "[redacted]"
    assert out["headers"] == {"authorization": "[redacted]", "x": ["[redacted]", "keep-me"]}
    assert out["error"] == "refused [redacted] from ?access_token=[redacted]"


def test_event_fields_named_like_record_attributes_and_exc_info_do_not_break_logging(capsys) -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("chatgenius")
    logger.addHandler(handler)
    try:
        try:
            raise ZeroDivisionError("boom")
        except ZeroDivisionError as exc:
            log.event("error", logging.ERROR, exc_info=exc, name="n", process="p", where="here")
    finally:
        logger.removeHandler(handler)
    out = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert out["event"] == "error" and out["level"] == "error" and out["where"] == "here"
    assert out["name_"] == "n" and out["process_"] == "p"
    assert "ZeroDivisionError: boom" in out["error"] and "Traceback" in out["error"]


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(JsonFormatter())
        self.lines: list[dict] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(self.format(record)))

    def find(self, event: str, **fields: object) -> list[dict]:
        return [r for r in self.lines if r["event"] == event and all(r.get(k) == v for k, v in fields.items())]


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch) -> Iterator[Flask]:
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    app = create_app(config.load({"AUTH_MODE": "dev", "BIND": "127.0.0.1:9", "HEARTBEAT_INTERVAL": "0.2"}))

    @app.get("/boom")
    def boom() -> str:
        raise RuntimeError("boom at /boom")

    yield app
    close(app)


@pytest.fixture
def lines() -> Iterator[Lines]:
    handler = Lines()
    logger = logging.getLogger("chatgenius")
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)


def test_request_id_is_honoured_echoed_and_on_the_stream_lines_until_close(app: Flask, lines: Lines) -> None:
    client = app.test_client()
    tok = client.post("/dev/token", json={"sub": "alice", "channels": ["channel:*"]}).json["token"]
    auth = {"Authorization": f"Bearer {tok}"}
    resp = client.get(f"/stream?channels={CHAN}", headers={**auth, "X-Request-ID": "edge-7f3a"}, buffered=False)
    assert resp.headers["X-Request-ID"] == "edge-7f3a"
    body = iter(resp.response)
    connected = json.loads(next(body).split(b"data: ")[1])
    other = client.get("/healthz", headers={"X-Request-ID": "bad id with spaces"})  # interleaved request
    assert other.headers["X-Request-ID"] != "bad id with spaces" and len(other.headers["X-Request-ID"]) == 32
    while not next(body).startswith(b": hb"):  # past this user's own user.presence
        pass
    resp.close()
    cid = connected["connection_id"]
    assert [r["request_id"] for r in lines.find("connection.open", connection_id=cid)] == ["edge-7f3a"]
    assert [r["request_id"] for r in lines.find("connection.close", connection_id=cid)] == ["edge-7f3a"]
    generated = client.get("/healthz").headers["X-Request-ID"]
    assert len(generated) == 32 and generated != other.headers["X-Request-ID"]
    assert log.request_id.get() is None  # nothing leaks past the request


def test_unexpected_error_is_logged_with_details_counted_and_answered_as_json(app: Flask, lines: Lines) -> None:
    client = app.test_client()
    resp = client.get("/boom", headers={"X-Request-ID": "rid-boom"})
    assert resp.status_code == 500 and resp.json["error"] == "internal"
    (line,) = lines.find("error", request_id="rid-boom")
    assert line["level"] == "error" and "RuntimeError: boom at /boom" in line["error"]
    admin = client.post("/dev/token", json={"sub": "root", "permissions": ["admin:sse"]}).json["token"]
    stats = client.get("/admin/stats", headers={"Authorization": f"Bearer {admin}"}).json
    assert stats["errors"]["internal"] == 1


def test_a_failing_stream_body_is_logged_and_counted_as_a_stream_error(app: Flask, lines: Lines) -> None:
    rt = app.extensions["chatgenius"]
    client = app.test_client()
    tok = client.post("/dev/token", json={"sub": "bob", "channels": ["channel:*"], "permissions": ["publish:events"]}).json["token"]
    auth = {"Authorization": f"Bearer {tok}"}
    resp = client.get(f"/stream?channels={CHAN}", headers={**auth, "X-Request-ID": "rid-stream"}, buffered=False)
    body = iter(resp.response)
    assert b"system.connected" in next(body)

    def broken(frames: list[bytes]) -> None:  # stands in for a bug in a hook of the loop
        raise ValueError("encoder bug")

    (session,) = rt.streams
    session.on_write = broken
    assert client.post("/events", json={"type": "message.created", "channel": CHAN, "data": {"text": "x"}}, headers=auth).status_code == 201
    with pytest.raises(ValueError):
        while True:
            next(body)
    (line,) = lines.find("error", where="stream", request_id="rid-stream")
    assert "ValueError: encoder bug" in line["error"]
    assert app.extensions["chatgenius.telemetry"].stats()["errors"]["stream"] == 1
    assert lines.find("connection.close", request_id="rid-stream")  # the session was still released
    assert not rt.bus.hub.subscribers


LEVEL_PROBE = """
import sys
from gevent import monkey; monkey.patch_all()
from chatgenius import config
from chatgenius.factory import create_app
app = create_app(config.load({"AUTH_MODE": "dev", "BIND": "127.0.0.1:9", "LOG_LEVEL": sys.argv[1]}))
c = app.test_client()
c.get("/stream?channels=channel:x", headers={"Authorization": "Bearer nope"})
tok = c.post("/dev/token", json={"sub": "a", "channels": ["channel:*"]}).json["token"]
c.get("/poll?channels=channel:x", headers={"Authorization": "Bearer " + tok})
"""


@pytest.mark.parametrize(
    ("level", "seen", "unseen"),
    [("WARNING", {"auth.fail"}, {"connection.reject", "auth.ok"}), ("DEBUG", {"auth.fail", "connection.reject", "auth.ok"}, set())],
)
def test_log_level_is_honoured(level: str, seen: set[str], unseen: set[str]) -> None:
    done = subprocess.run(
        [sys.executable, "-c", LEVEL_PROBE, level], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode == 0, done.stderr
    events = {json.loads(line)["event"] for line in done.stdout.splitlines() if line.startswith("{")}
    assert seen <= events and not unseen & events, done.stdout
