"""A stand-in for Auth0 in tests: a local JWKS endpoint and an issuer that signs access tokens.

`JWKSServer` is a tiny threaded http.server serving `/.well-known/jwks.json`
from the keys it holds right now: adding or removing a key is a key rotation,
and `stop()`/`start()` (same port) is the identity provider going down and
coming back. `Issuer` mints RS256 tokens with Auth0's claim shapes, and the
broken ones an attacker would try (alg none, HS256 with the public key,
tampered payload, foreign key).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self

from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey

from .procs import free_port

ISSUER = "https://issuer.test.example/"
AUDIENCE = "https://realtime.test.example"
CHANNELS_CLAIM = "https://chatgenius.app/channels"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def new_key() -> RSAKey:
    return RSAKey.generate_key(2048, auto_kid=True)


class JWKSServer:
    """Serves the public half of `keys` at `url`; `hits` counts fetches."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.keys: list[RSAKey] = []
        self.hits = 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/.well-known/jwks.json"

    def document(self) -> dict[str, Any]:
        return KeySet(list(self.keys)).as_dict(private=False)

    def add_key(self, key: RSAKey | None = None) -> RSAKey:
        key = key or new_key()
        self.keys.append(key)
        return key

    def start(self) -> Self:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                if self.path != "/.well-known/jwks.json":
                    self.send_error(404)
                    return
                owner.hits += 1
                body = json.dumps(owner.document()).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Close the listening socket: fetches get connection refused, as with a provider outage."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    @property
    def running(self) -> bool:
        return self._server is not None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()


class Issuer:
    """Signs access tokens like an Auth0 tenant whose keys `jwks` serves."""

    def __init__(self, jwks: JWKSServer, issuer: str = ISSUER, audience: str = AUDIENCE) -> None:
        self.jwks = jwks
        self.issuer = issuer
        self.audience = audience
        self.key = jwks.keys[0] if jwks.keys else jwks.add_key()

    def claims(
        self, sub: str, channels: Iterable[str] = (), permissions: Iterable[str] = (), ttl: float = 600, **extra: Any
    ) -> dict[str, Any]:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": [self.audience, "https://issuer.test.example/userinfo"],
            "sub": sub,
            "iat": now,
            "exp": int(now + ttl),
            CHANNELS_CLAIM: list(channels),
            "permissions": list(permissions),
        }
        claims.update(extra)
        return {k: v for k, v in claims.items() if v is not None}

    def sign(self, claims: dict[str, Any], key: RSAKey | None = None, kid: str | None = None) -> str:
        key = key or self.key
        return jwt.encode({"alg": "RS256", "kid": kid or key.kid, "typ": "JWT"}, claims, key, algorithms=["RS256"])

    def token(self, sub: str, channels: Iterable[str] = (), permissions: Iterable[str] = (), ttl: float = 600, **extra: Any) -> str:
        return self.sign(self.claims(sub, channels, permissions, ttl, **extra))

    # -- what an attacker sends ------------------------------------------------------
    def unsigned(self, claims: dict[str, Any]) -> str:
        """`alg: none` with an empty signature."""
        header = {"alg": "none", "kid": self.key.kid, "typ": "JWT"}
        return f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}."

    def hs256_with_public_key(self, claims: dict[str, Any]) -> str:
        """HS256 keyed with the RSA public key's PEM: the classic algorithm-confusion forgery."""
        header = {"alg": "HS256", "kid": self.key.kid, "typ": "JWT"}
        signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
        pem = self.key.as_pem(private=False)
        sig = hmac.new(pem, signing_input.encode(), hashlib.sha256).digest()
        return f"{signing_input}.{b64url(sig)}"

    def tampered(self, token: str, **changes: Any) -> str:
        """The same header and signature over a payload with `changes` applied."""
        header, payload, sig = token.split(".")
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        claims.update(changes)
        return f"{header}.{b64url(json.dumps(claims).encode())}.{sig}"
