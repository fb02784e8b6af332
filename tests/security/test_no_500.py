"""Hostile but well-formed input is a 4xx JSON error, never a 500 (real gunicorn, Redis, a local JWKS).

A validly signed token may carry any JSON the signer wrote (an `exp` of 10**400
overflows a float) and a dev-token body any JSON string (a lone surrogate cannot
be encoded as UTF-8 into a JWT or a Redis key).
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from support.gunicorn import Gunicorn
from support.http_json import request
from support.jwks_server import b64url
from support.service import service_env

from .conftest import Deployment


def _assert_json_4xx(resp, status: int) -> dict:
    assert resp.status == status, resp.text
    assert resp.headers.get("Content-Type", "").startswith("application/json"), resp.headers
    return resp.json()


@pytest.mark.parametrize("exp", [10**400, -(10**400), "1e999"], ids=["overflow", "negative_overflow", "string"])
def test_token_with_absurd_exp_is_401_not_500(deployment: Deployment, user: str, exp: int):
    token = deployment.issuer.sign(deployment.issuer.claims(user, ("channel:*",), exp=exp))
    resp = request("POST", deployment.base + "/tickets", b"", {"Authorization": f"Bearer {token}"})
    body = _assert_json_4xx(resp, 401)
    assert body["error"] == "unauthorized"
    assert body["reason"] in ("bad_claims", "expired")


def _signed_raw(deployment: Deployment, claims: dict) -> str:
    """RS256 over JSON with ASCII escapes: how a signer's lone surrogate reaches us (joserfc cannot encode one)."""
    key = deployment.issuer.key
    header = {"alg": "RS256", "kid": key.kid, "typ": "JWT"}
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
    signature = key.private_key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{b64url(signature)}"


def test_token_with_unencodable_subject_is_401_not_500(deployment: Deployment):
    token = _signed_raw(deployment, deployment.issuer.claims("\ud800", ("channel:*",)))
    # (/poll too, but the shared deployment's 5/minute poll budget per address is spent by other tests)
    for method, path in (("POST", "/tickets"), ("GET", "/stream?channels=channel:general")):
        resp = request(method, deployment.base + path, b"" if method == "POST" else None, {"Authorization": f"Bearer {token}"})
        assert _assert_json_4xx(resp, 401)["reason"] == "bad_claims"


@pytest.fixture(scope="module")
def dev_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gunicorn]:
    """Dev auth on loopback, in-memory bus, one worker."""
    with Gunicorn(workers=1, env=service_env(None), workdir=tmp_path_factory.mktemp("dev")) as server:
        yield server


@pytest.mark.parametrize(
    "body",
    [
        {"sub": "\ud800"},
        {"sub": "ok", "permissions": ["\udfff"]},
        {"sub": "ok", "channels": ["channel:\ud800"]},
    ],
    ids=["sub", "permission", "channel"],
)
def test_dev_token_with_lone_surrogate_is_400_not_500(dev_server: Gunicorn, body: dict):
    raw = json.dumps(body).encode()  # ensure_ascii: the surrogate travels as a \\ud800 escape
    resp = request("POST", dev_server.base_url + "/dev/token", raw, {"Content-Type": "application/json"})
    assert _assert_json_4xx(resp, 400)["error"] == "bad_request"
