"""A stream never outlives its token: `system.reauth` before `exp`, then a resume that loses nothing."""

from __future__ import annotations

import time

from support.jwks_server import CHANNELS_CLAIM

from .conftest import Deployment


def test_five_second_token_gets_reauth_before_expiry_and_resume_loses_nothing(deployment: Deployment, user: str):
    room = f"channel:expiry-{user[-6:]}"
    claims = deployment.issuer.claims(user, (room,), ttl=5)
    short, exp = deployment.issuer.sign(claims), claims["exp"]
    published: list[str] = []
    with deployment.stream(short, f"channels={room}") as client:
        assert client.status == 200 and client.next(5).event == "system.connected"
        published.append(deployment.publish(room, {"n": 0}))
        seen = [client.read_until(lambda f: f.event == "message.created", 5)]
        reauth = client.read_until(lambda f: f.event == "system.reauth", 8)
        at = time.time()
        assert at < exp, f"reauth came {at - exp:.2f}s after exp"
        assert reauth.id is None and reauth.json() == {"reason": "token_expiring"}
        assert client.wait_closed(3)  # no silent anonymous stream after it
        last_id = client.last_event_id
    assert [f.id for f in seen] == published

    # While the client is away, more happens; it comes back with a fresh token and its cursor.
    published += [deployment.publish(room, {"n": n}) for n in (1, 2, 3)]
    fresh = deployment.issuer.sign({**deployment.issuer.claims(user, ttl=600), CHANNELS_CLAIM: [room]})
    with deployment.stream(fresh, f"channels={room}", {"Last-Event-ID": last_id}) as resumed:
        assert resumed.status == 200
        connected = resumed.next(5)
        assert connected.event == "system.connected" and connected.json()["resumed"] is True
        published.append(deployment.publish(room, {"n": 4}))
        frames = [resumed.read_until(lambda f: f.event == "message.created", 5) for _ in range(4)]
    assert [f.id for f in frames] == published[1:]
    assert [f.json()["data"]["n"] for f in frames] == [1, 2, 3, 4]
    reasons = [r.get("reason") for r in deployment.logs("connection.close") if r.get("user_id") == user]
    assert "token_expiring" in reasons
