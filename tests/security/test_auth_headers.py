"""Tokens the verifier must refuse for what their header or claims say, end to end on real gunicorn.

The reasons no other test reaches: `no_kid`, `bad_claims`; algorithms outside
the allow-list (RS512, PS256, ES256 when only RS256 is allowed); and headers
that try to bring their own key (`jwk`) or a URL to fetch one from (`jku`,
`x5u`): the service must use only its configured JWKS, so the attacker's key
server is checked to have received no request at all.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey
from support.http_json import request
from support.jwks_server import Issuer, JWKSServer
from support.procs import wait_until

from .conftest import Deployment
from .test_auth import ENDPOINTS, auth_fails


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def rs256(header: dict[str, Any], claims: dict[str, Any], key: RSAKey) -> str:
    """Sign by hand: joserfc refuses to encode the odd headers (kid missing, empty or not a string)."""
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
    signature = key.private_key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{b64url(signature)}"


@pytest.fixture(scope="module")
def attacker() -> Iterator[JWKSServer]:
    """The attacker's own key server, serving the attacker's key; it must never be asked."""
    with JWKSServer() as server:
        server.add_key()
        yield server


Build = Callable[[Issuer, str, JWKSServer], str]


def without(claims: dict[str, Any], name: str) -> dict[str, Any]:
    return {k: v for k, v in claims.items() if k != name}


# name -> (token builder, expected reason)
CASES: dict[str, tuple[Build, str]] = {
    "no_kid": (lambda i, sub, a: rs256({"alg": "RS256", "typ": "JWT"}, i.claims(sub), i.key), "no_kid"),
    "empty_kid": (lambda i, sub, a: rs256({"alg": "RS256", "kid": ""}, i.claims(sub), i.key), "no_kid"),
    "kid_not_a_string": (lambda i, sub, a: rs256({"alg": "RS256", "kid": 7}, i.claims(sub), i.key), "no_kid"),
    "no_subject": (lambda i, sub, a: rs256({"alg": "RS256", "kid": i.key.kid}, without(i.claims(sub), "sub"), i.key), "bad_claims"),
    "subject_not_a_string": (lambda i, sub, a: rs256({"alg": "RS256", "kid": i.key.kid}, {**i.claims(sub), "sub": 42}, i.key),
                             "bad_claims"),
    "subject_too_long": (lambda i, sub, a: i.sign(i.claims("x" * 121)), "bad_claims"),
    "no_expiry": (lambda i, sub, a: rs256({"alg": "RS256", "kid": i.key.kid}, without(i.claims(sub), "exp"), i.key), "bad_claims"),
    "expiry_not_a_number": (lambda i, sub, a: rs256({"alg": "RS256", "kid": i.key.kid}, {**i.claims(sub), "exp": "tomorrow"}, i.key),
                            "bad_claims"),
    # Asymmetric, signed by the tenant's own key, but not in JWT_ALGORITHMS (RS256 only).
    "rs512": (lambda i, sub, a: jwt.encode({"alg": "RS512", "kid": i.key.kid}, i.claims(sub), i.key, algorithms=["RS512"]),
              "bad_algorithm"),
    "ps256": (lambda i, sub, a: jwt.encode({"alg": "PS256", "kid": i.key.kid}, i.claims(sub), i.key, algorithms=["PS256"]),
              "bad_algorithm"),
    "es256": (lambda i, sub, a: jwt.encode({"alg": "ES256", "kid": i.key.kid}, i.claims(sub), ECKey.generate_key("P-256"),
                                           algorithms=["ES256"]), "bad_algorithm"),
    # The token brings its own key: embedded (jwk) or by URL (jku, x5u), with the attacker's kid or the tenant's.
    "jku_with_its_own_kid": (lambda i, sub, a: rs256({"alg": "RS256", "kid": a.keys[0].kid, "jku": a.url}, i.claims(sub), a.keys[0]),
                             "unknown_kid"),
    "jku_with_a_known_kid": (lambda i, sub, a: rs256({"alg": "RS256", "kid": i.key.kid, "jku": a.url}, i.claims(sub), a.keys[0]),
                             "bad_signature"),
    "x5u_with_a_known_kid": (lambda i, sub, a: rs256({"alg": "RS256", "kid": i.key.kid, "x5u": a.url}, i.claims(sub), a.keys[0]),
                             "bad_signature"),
    "jwk_with_its_own_kid": (lambda i, sub, a: rs256({"alg": "RS256", "kid": a.keys[0].kid, "jwk": a.keys[0].as_dict(private=False)},
                                                     i.claims(sub), a.keys[0]), "unknown_kid"),
    # joserfc refuses a compact token whose protected header carries a jwk: "malformed" before any key is used.
    "jwk_with_a_known_kid": (lambda i, sub, a: rs256({"alg": "RS256", "kid": i.key.kid, "jwk": a.keys[0].as_dict(private=False)},
                                                     i.claims(sub), a.keys[0]), "malformed"),
}


@pytest.mark.parametrize("method,path", ENDPOINTS, ids=["stream", "events", "tickets"])
@pytest.mark.parametrize("case", list(CASES))
def test_token_is_refused_with_its_reason(deployment: Deployment, attacker: JWKSServer, user: str, case: str, method: str, path: str):
    build, reason = CASES[case]
    token = build(deployment.issuer, user, attacker)
    before = auth_fails(deployment, reason)
    headers = {"Authorization": f"Bearer {token}"}
    headers.update({"Accept": "text/event-stream"} if path.startswith("/stream") else {"Content-Type": "application/json"})
    body = b'{"channel":"channel:general","type":"message.created","data":{}}' if method == "POST" else None
    resp = request(method, deployment.base + path, body, headers)

    assert resp.status == 401, resp.text
    assert resp.json()["error"] == "unauthorized" and resp.json()["reason"] == reason, resp.json()
    assert f'error_description="{reason}"' in resp.headers["WWW-Authenticate"]
    wait_until(lambda: auth_fails(deployment, reason) > before, 5, message=f"auth.fail {reason} logged")
    assert not [r for r in deployment.logs("connection.open") if r.get("user_id") == user]
    assert attacker.hits == 0, "the service fetched a key from a URL a token named"


def test_the_same_claims_signed_properly_are_accepted(deployment: Deployment, user: str):
    """The control: what the cases above change is what makes them fail."""
    issuer = deployment.issuer
    token = rs256({"alg": "RS256", "kid": issuer.key.kid, "typ": "JWT"}, issuer.claims(user, ("channel:*",)), issuer.key)
    with deployment.stream(token, "channels=channel:general") as client:
        assert client.status == 200, client.body()
        assert client.next(5).event == "system.connected"

