"""KeySource: the signing keys of a JWKS, by `kid`, fetched over HTTP and cached.

Kept apart from token verification (auth.py): this is the only network I/O of
authentication, and its failure policy (keep the keys we had) is its own.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.request
from collections.abc import Callable
from typing import Any

from joserfc.jwk import JWKRegistry

log = logging.getLogger(__name__)


class KeySource:
    """JWKS keys by `kid`: cached, refetched on an unknown kid at most once per `min_refresh` s.

    A failed fetch keeps the keys we had, so an unreachable JWKS never breaks
    tokens whose key we already know (contract, Identity).
    """

    def __init__(
        self,
        fetch: Callable[[], dict],
        min_refresh: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch = fetch
        self._min_refresh = min_refresh
        self._clock = clock
        self._keys: dict[str, Any] = {}
        self._last_try = float("-inf")
        self._lock = threading.Lock()

    def get(self, kid: str) -> Any | None:
        """The key for `kid`, refetching the JWKS first when it is unknown (a signer rotated keys)."""
        key = self._keys.get(kid)
        # With no key at all (the JWKS was down at start) every token fails: retry within a second, not 30.
        interval = self._min_refresh if self._keys else min(self._min_refresh, 1.0)
        if key is None and self._clock() - self._last_try >= interval:
            with self._lock:
                if kid not in self._keys and self._clock() - self._last_try >= interval:
                    self.refresh()
            key = self._keys.get(kid)
        return key

    def refresh(self) -> None:
        """Refetch the JWKS now, replacing the keys only when the fetch and every import succeed."""
        self._last_try = self._clock()
        try:
            document = self._fetch()
            keys = {}
            for item in document.get("keys", []):
                # Public asymmetric keys only: an "oct" (shared secret) key is never imported.
                if item.get("kty") in ("RSA", "EC", "OKP") and item.get("kid") and item.get("use", "sig") == "sig":
                    keys[item["kid"]] = JWKRegistry.import_key(item)
            self._keys = keys
        except Exception as exc:  # network, JSON, key format: keep what we had
            log.warning("jwks fetch failed, keeping %d cached keys: %s", len(self._keys), exc, extra={"event": "jwks.fail"})


def http_fetcher(url: str, timeout: float = 3.0) -> Callable[[], dict]:
    """A KeySource fetch over HTTP(S) with a timeout and a 1 MiB cap, so a slow or huge JWKS cannot hang a worker."""

    def fetch() -> dict:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 (URL from config)
            return json.loads(resp.read(1 << 20))

    return fetch
