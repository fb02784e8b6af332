"""The embedded default (`python app.py`: in-process bus, no Redis): the same chat features in one process."""

from __future__ import annotations

import json
import time

import pytest

import chatgenius
from chatgenius.factory import create_app


@pytest.fixture
def app():
    app = create_app(env={"AUTH_MODE": "dev", "BIND": "127.0.0.1:8000", "HEARTBEAT_INTERVAL": "0.2", "PRESENCE_GRACE": "0.3"})
    yield app
    chatgenius.close(app)


def token(client, sub: str, permissions: list[str] | None = None) -> dict[str, str]:
    body = {"sub": sub, "channels": ["channel:*"], "permissions": permissions or []}
    return {"Authorization": "Bearer " + client.post("/dev/token", json=body).json["token"]}


class Frames:
    """Drives a test-client stream body and splits it into (event, data) pairs."""

    def __init__(self, response) -> None:
        self.response = response
        self._body = iter(response.response)

    def until(self, event: str, limit: int = 50) -> dict:
        for _ in range(limit):
            chunk = next(self._body).decode()
            for block in chunk.split("\n\n"):
                fields = dict(line.split(": ", 1) for line in block.split("\n") if ": " in line and not line.startswith(":"))
                if fields.get("event") == event:
                    return json.loads(fields["data"])
        raise AssertionError(f"no {event} in {limit} writes")


def test_typing_presence_subscriptions_admin_and_flags_in_process(app):
    client = app.test_client()
    alice, bob = token(client, "alice"), token(client, "bob", ["publish:events"])
    admin = token(client, "root", ["admin:sse"])
    stream = Frames(client.get("/stream?channels=channel:a", headers=alice, buffered=False))
    try:
        conn = stream.until("system.connected")["connection_id"]
        assert stream.until("user.presence")["data"] == {"user_id": "alice", "status": "online"}
        assert client.get("/presence/channel:a", headers=bob).json["users"] == ["alice"]

        assert client.post("/typing", json={"channel": "channel:a"}, headers=bob).json == {"dropped": False}
        assert client.post("/typing", json={"channel": "channel:a"}, headers=bob).json == {"dropped": True}
        assert stream.until("user.typing") == {"type": "user.typing", "channel": "channel:a", "data": {"user_id": "bob"},
                                               "ts": pytest.approx(time.time(), abs=5)}

        answer = client.post("/subscriptions", json={"connection_id": conn, "subscribe": ["channel:b"]}, headers=alice)
        assert answer.status_code == 200 and answer.json["channels"] == ["channel:a", "channel:b"]
        assert client.post("/subscriptions", json={"connection_id": conn, "subscribe": ["channel:c"]}, headers=bob).status_code == 404
        client.post("/events", json={"channel": "channel:b", "type": "message.created", "data": {"n": 1}}, headers=bob)
        assert stream.until("message.created")["data"] == {"n": 1}

        rows = client.get("/admin/connections", headers=admin).json
        assert rows["processes"] == 1 and [r["id"] for r in rows["connections"]] == [conn]
        assert client.get("/admin/connections", headers=alice).status_code == 403

        assert client.put("/admin/flags", json={"ENABLE_SSE": False}, headers=admin).json["ENABLE_SSE"] is False
        assert stream.until("system.fallback") == {"poll_url": "/poll"}
        assert client.get("/client-config").json["transport"] == "poll"
        assert client.get("/stream?channels=channel:a", headers=alice).status_code == 503
        assert client.put("/admin/flags", json={"ENABLE_SSE": True}, headers=admin).json["ENABLE_SSE"] is True
    finally:
        stream.response.close()
    deadline = time.monotonic() + 3
    while client.get("/presence/channel:a", headers=bob).json["users"]:
        assert time.monotonic() < deadline, "alice goes offline after the grace"
        time.sleep(0.05)
