"""Verified tokens are answered from memory for a while (auth.Verifier.verify), never past their expiry."""

from __future__ import annotations

import pytest

from chatgenius import auth
from chatgenius.auth import AuthError, DevIssuer, KeySource, Verifier


def make() -> tuple[Verifier, DevIssuer, list[int]]:
    store: dict[str, str] = {}
    dev = DevIssuer(lambda k, v: store.setdefault(k, v), "https://chatgenius.app/channels")
    fetches: list[int] = []

    def jwks() -> dict:
        fetches.append(1)
        return dev.jwks()

    keys = KeySource(jwks, min_refresh=0.0)
    return Verifier(keys, DevIssuer.ISSUER, DevIssuer.AUDIENCE, ["RS256"], "https://chatgenius.app/channels"), dev, fetches


def test_second_verify_of_a_token_is_answered_from_the_cache(monkeypatch: pytest.MonkeyPatch):
    verifier, dev, _ = make()
    token = dev.mint("alice", ["channel:*"], ["publish:events"], 3600)
    first = verifier.verify(token)
    calls: list[str] = []
    real = verifier._verify
    monkeypatch.setattr(verifier, "_verify", lambda t: calls.append(t) or real(t))
    assert verifier.verify(token) == first and calls == []
    other = dev.mint("bob", [], [], 3600)  # another token is verified, not confused with the first
    assert verifier.verify(other).sub == "bob" and calls == [other]


def test_a_cached_token_still_expires(monkeypatch: pytest.MonkeyPatch):
    verifier, dev, _ = make()
    token = dev.mint("alice", [], [], 60)
    identity = verifier.verify(token)
    now = auth.time.time()
    monkeypatch.setattr(auth.time, "time", lambda: identity.exp + auth.LEEWAY + 1)
    with pytest.raises(AuthError) as err:
        verifier.verify(token)
    assert err.value.reason == "expired"
    assert now < identity.exp


def test_the_cache_is_bounded_and_entries_age_out(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(auth, "CACHE_SIZE", 3)
    verifier, dev, _ = make()
    tokens = [dev.mint(f"u{i}", [], [], 3600) for i in range(5)]
    for t in tokens:
        verifier.verify(t)
    assert len(verifier._cache) == 3
    calls: list[str] = []
    real = verifier._verify
    monkeypatch.setattr(verifier, "_verify", lambda t: calls.append(t) or real(t))
    later = auth.time.time() + auth.CACHE_TTL + 1
    monkeypatch.setattr(auth.time, "time", lambda: later)
    verifier.verify(tokens[-1])  # older than CACHE_TTL: verified again
    assert calls == [tokens[-1]]


def test_a_bad_token_is_never_cached():
    verifier, dev, _ = make()
    token = dev.mint("alice", [], [], 3600)
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    for _ in range(2):
        with pytest.raises(AuthError):
            verifier.verify(forged)
    assert len(verifier._cache) == 0
