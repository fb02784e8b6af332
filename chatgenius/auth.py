"""Who is calling: JWT verification against a JWKS (joserfc), and what a user may read.

The keys come from jwks.py (KeySource) or, in dev mode, dev_issuer.py (DevIssuer);
both are importable from here, where callers look for them.

One path verifies every token, production or dev: `Verifier.verify` picks the
key by `kid` from a `KeySource`, checks the signature with an allow-list of
asymmetric algorithms (so `alg: none` and HS256-signed-with-the-public-key are
refused by construction), then `iss`, `aud`, `exp`, `nbf` with 30 s leeway.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

from joserfc import jwt
from joserfc.errors import BadSignatureError, ClaimError, ExpiredTokenError, JoseError

from .dev_issuer import DevIssuer
from .jwks import KeySource, http_fetcher

__all__ = ["CACHE_TTL", "LEEWAY", "AuthError", "DevIssuer", "Identity", "KeySource", "Verifier", "bearer", "encodable", "http_fetcher"]
LEEWAY = 30
CACHE_TTL = 60.0  # seconds a verified token is answered from memory (Verifier.verify)
CACHE_SIZE = 4096  # tokens per process


class AuthError(Exception):
    """Authentication failed; `reason` is logged and counted, never the token."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@lru_cache(maxsize=4096)
def _pattern(glob: str) -> re.Pattern[str]:
    return re.compile("^" + re.escape(glob).replace(r"\*", "[^:]*") + r"\Z")  # \Z: `$` would allow a trailing newline


@dataclass(frozen=True)
class Identity:
    """A verified caller: subject, readable channel patterns, permissions, token expiry."""

    sub: str
    patterns: tuple[str, ...] = ()
    permissions: frozenset[str] = frozenset()
    exp: float | None = None

    def may_read(self, channel: str) -> bool:
        """True for the caller's own `user:<sub>` channel or one matching a pattern of its token."""
        if channel == "user:" + self.sub:
            return True
        return any(_pattern(p).fullmatch(channel) for p in self.patterns)

    def forbidden(self, channels: Iterable[str]) -> list[str]:
        """The channels of `channels` this caller may not read, in order: the 403 names them."""
        return [c for c in channels if not self.may_read(c)]

    @property
    def can_publish(self) -> bool:
        """The token grants `publish:events` (POST /events)."""
        return "publish:events" in self.permissions

    @property
    def is_admin(self) -> bool:
        """The token grants `admin:sse` (/admin/*, /metrics with a token)."""
        return "admin:sse" in self.permissions


def _claim_patterns(value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        value = value.split()
    if not isinstance(value, list):
        return ()
    return tuple(v for v in value if isinstance(v, str))


def _permissions(claims: dict) -> frozenset[str]:
    perms = {p for p in claims.get("permissions", []) if isinstance(p, str)} if isinstance(claims.get("permissions"), list) else set()
    scope = claims.get("scope")
    if isinstance(scope, str):
        perms.update(scope.split())
    return frozenset(perms)


class Verifier:
    """Verify a bearer token into an Identity, or raise AuthError with a reason."""

    def __init__(self, keys: KeySource, issuer: str, audience: str, algorithms: Iterable[str], channels_claim: str) -> None:
        self._keys = keys
        self._algorithms = list(algorithms)
        self._channels_claim = channels_claim
        self._cache: dict[bytes, tuple[Identity, float]] = {}  # sha256(token) -> (identity, valid until)
        self._registry = jwt.JWTClaimsRegistry(
            leeway=LEEWAY,
            iss={"essential": True, "value": issuer},
            aud={"essential": True, "value": audience},
            sub={"essential": True},
            exp={"essential": True},
        )

    def verify(self, token: str) -> Identity:
        """Verify `token`, or answer from the cache of tokens verified in the last CACHE_TTL s.

        Why the cache: a publisher or poller sends the same token on every request,
        and an RS256 verify plus claims checks is a large share of a publish's CPU.
        A hit still checks expiry; a key removed from the JWKS stops its tokens
        within CACHE_TTL (a compromised key needs a reload anyway, docs/SECURITY.md).
        """
        digest = hashlib.sha256(token.encode()).digest()
        now = time.time()
        hit = self._cache.get(digest)
        if hit is not None:
            identity, until = hit
            if now < until:
                return identity
            del self._cache[digest]
            if identity.exp is not None and now > identity.exp + LEEWAY:
                raise AuthError("expired", "token has expired")
        identity = self._verify(token)
        until = now + CACHE_TTL if identity.exp is None else min(now + CACHE_TTL, identity.exp + LEEWAY)
        if len(self._cache) >= CACHE_SIZE:
            self._cache.pop(next(iter(self._cache)))  # oldest first: dicts keep insertion order
        self._cache[digest] = (identity, until)
        return identity

    def cached(self, token: str) -> Identity | None:
        """The identity of a token verified here within CACHE_TTL and not expired, else None.

        No side effects (no verification, no log line): the fast publish path
        (web/publish_fast.py) hands anything else to the full request path.
        """
        hit = self._cache.get(hashlib.sha256(token.encode()).digest())
        if hit is None or time.time() >= hit[1]:
            return None
        return hit[0]

    def _verify(self, token: str) -> Identity:
        header = _header(token)
        alg = header.get("alg")
        if alg not in self._algorithms:
            raise AuthError("bad_algorithm", f"algorithm {str(alg)[:20]!r} is not accepted")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise AuthError("no_kid", "token header has no kid")
        key = self._keys.get(kid)
        if key is None:
            raise AuthError("unknown_kid", "token signed by a key not in the JWKS")
        try:
            decoded = jwt.decode(token, key, algorithms=self._algorithms)
        except BadSignatureError:
            raise AuthError("bad_signature", "token signature is invalid") from None
        except JoseError as exc:
            raise AuthError("malformed", f"token is malformed: {exc.error}") from None
        except (ValueError, TypeError):
            raise AuthError("malformed", "token is malformed") from None
        claims = decoded.claims
        try:
            self._registry.validate(claims)
        except ExpiredTokenError:
            raise AuthError("expired", "token has expired") from None
        except ClaimError as exc:
            reason = {"iss": "bad_issuer", "aud": "bad_audience", "nbf": "not_yet_valid"}.get(exc.claim, "bad_claims")
            raise AuthError(reason, f"token claim {exc.claim!r} is invalid") from None
        sub = claims["sub"]
        if not isinstance(sub, str) or not sub or len(sub) > 120 or not encodable(sub):
            raise AuthError("bad_claims", "token subject is invalid")
        return Identity(
            sub=sub,
            patterns=_claim_patterns(claims.get(self._channels_claim)),
            permissions=_permissions(claims),
            exp=_expiry(claims["exp"]),
        )


def encodable(text: str) -> bool:
    """True when `text` is valid Unicode (no lone surrogates): it will go into log lines and Redis keys as UTF-8."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _expiry(value: object) -> float:
    """`exp` as a finite float; a signer's 10**400 passed the registry's int comparison but overflows here."""
    try:
        exp = float(value)  # type: ignore[arg-type]  # the registry checked it is a number
    except (OverflowError, TypeError, ValueError):
        raise AuthError("bad_claims", "token claim 'exp' is out of range") from None
    if not math.isfinite(exp):
        raise AuthError("bad_claims", "token claim 'exp' is out of range")
    return exp


def _header(token: str) -> dict:
    parts = token.split(".")
    if len(parts) != 3 or len(token) > 16384:
        raise AuthError("malformed", "token is not a compact JWS")
    try:
        raw = base64.urlsafe_b64decode(parts[0] + "=" * (-len(parts[0]) % 4))
        header = json.loads(raw)
    except (ValueError, TypeError):
        raise AuthError("malformed", "token header is not valid JSON") from None
    if not isinstance(header, dict):
        raise AuthError("malformed", "token header is not an object")
    return header


def bearer(header_value: str | None) -> str:
    """The token from an `Authorization: Bearer` header, or AuthError('missing')."""
    if not header_value:
        raise AuthError("missing", "Authorization: Bearer <token> is required")
    scheme, _, token = header_value.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthError("malformed", "Authorization must be 'Bearer <token>'")
    return token.strip()
