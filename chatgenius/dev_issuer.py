"""DevIssuer: AUTH_MODE=dev's own token issuer (refused unless every bind is loopback, see config.py).

Its tokens go through the same Verifier as production's; only where the keys come from differs.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey


class DevIssuer:
    """AUTH_MODE=dev: the app is its own issuer; keys shared through the bus so every worker agrees."""

    ISSUER = "chatgenius-dev"
    AUDIENCE = "chatgenius-dev"

    def __init__(self, setnx: Callable[[str, str], str], channels_claim: str) -> None:
        candidate = RSAKey.generate_key(2048, auto_kid=True)
        stored = setnx("cg:dev:key", json.dumps(candidate.as_dict(private=True)))
        self._key = RSAKey.import_key(json.loads(stored))
        self._channels_claim = channels_claim

    def jwks(self) -> dict:
        """The public half of the key, served on /.well-known/jwks.json for the dev KeySource."""
        return KeySet([self._key]).as_dict(private=False)

    def mint(self, sub: str, channels: list[str], permissions: list[str], ttl: int) -> str:
        """A signed token with the claims production tokens carry, for local clients and tests."""
        now = int(time.time())
        claims = {
            "iss": self.ISSUER,
            "aud": [self.AUDIENCE],
            "sub": sub,
            "iat": now,
            "exp": now + ttl,
            self._channels_claim: channels,
            "permissions": permissions,
        }
        return jwt.encode({"alg": "RS256", "kid": self._key.kid}, claims, self._key, algorithms=["RS256"])
