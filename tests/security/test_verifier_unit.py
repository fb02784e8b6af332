"""auth.Verifier, bearer(), Identity and KeySource in process: every reason, every claim rule, fast.

The same rules are proven end to end on gunicorn in test_auth.py and
test_auth_headers.py; these run in milliseconds, so the mutation run
(`make mutation`) can use them against every mutant of chatgenius/auth.py.
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet, OctKey, RSAKey

from chatgenius.auth import LEEWAY, AuthError, Identity, KeySource, Verifier, bearer

ISS, AUD, CLAIM = "https://issuer.unit/", "https://api.unit", "https://chatgenius.app/channels"
KEY = RSAKey.generate_key(2048, auto_kid=True)
OTHER = RSAKey.generate_key(2048, auto_kid=True)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def raw(header: dict[str, Any], claims: dict[str, Any], key: RSAKey = KEY) -> str:
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
    return f"{signing_input}.{b64url(key.private_key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256()))}"


def claims(**changes: Any) -> dict[str, Any]:
    now = int(time.time())
    # exp a day ahead: parametrized tokens are made at collection, and a full suite reaches them minutes later
    out = {"iss": ISS, "aud": [AUD, "https://issuer.unit/userinfo"], "sub": "auth0|alice", "iat": now, "exp": now + 86400,
           CLAIM: ["channel:*"], "permissions": ["publish:events"]}
    out.update(changes)
    return {k: v for k, v in out.items() if v is not None}


def token(**changes: Any) -> str:
    return raw({"alg": "RS256", "kid": KEY.kid, "typ": "JWT"}, claims(**changes))


def verifier(algorithms: tuple[str, ...] = ("RS256",)) -> Verifier:
    keys = KeySource(lambda: KeySet([KEY]).as_dict(private=False), min_refresh=0.0)
    return Verifier(keys, ISS, AUD, algorithms, CLAIM)


def reason(tok: str, v: Verifier | None = None) -> str:
    with pytest.raises(AuthError) as caught:
        (v or verifier()).verify(tok)
    return caught.value.reason


def test_a_good_token_gives_its_identity():
    ident = verifier().verify(token(scope="openid admin:sse", permissions=["publish:events", 7]))
    assert ident.sub == "auth0|alice" and ident.patterns == ("channel:*",)
    assert ident.permissions == frozenset({"publish:events", "openid", "admin:sse"})
    assert ident.can_publish and ident.is_admin
    assert isinstance(ident.exp, float) and ident.exp > time.time()


@pytest.mark.parametrize(("value", "patterns"), [
    (["channel:*", 3, "dm:1-2"], ("channel:*", "dm:1-2")), ("channel:* dm:x", ("channel:*", "dm:x")), (None, ()), ({"a": 1}, ()),
])
def test_the_channels_claim_is_a_list_or_a_space_separated_string(value, patterns):
    assert verifier().verify(token(**{CLAIM: value})).patterns == patterns


@pytest.mark.parametrize(("perms", "scope", "expected"), [
    (None, None, set()), ("publish:events", None, set()), (["a"], "b c", {"a", "b", "c"}), ([], 5, set()),
])
def test_permissions_come_from_the_list_and_the_scope(perms, scope, expected):
    ident = verifier().verify(token(permissions=perms, scope=scope))
    assert ident.permissions == frozenset(expected)
    assert ident.can_publish is ("publish:events" in expected) and ident.is_admin is ("admin:sse" in expected)


HEADER = {"alg": "RS256", "kid": KEY.kid}


@pytest.mark.parametrize(("tok", "why"), [
    ("only.two", "malformed"),
    ("a.b.c.d", "malformed"),
    ("x" * 16385 + ".e30.AAAA", "malformed"),
    ("bm90IGpzb24.e30.AAAA", "malformed"),  # header is not JSON
    (b64url(b"[1]") + ".e30.AAAA", "malformed"),  # header is not an object
    (b64url(json.dumps({"alg": "none", "kid": KEY.kid}).encode()) + "." + b64url(json.dumps(claims()).encode()) + ".", "bad_algorithm"),
    (b64url(json.dumps({"kid": KEY.kid}).encode()) + ".e30.AAAA", "bad_algorithm"),
    (raw({"alg": "RS256"}, claims()), "no_kid"),
    (raw({"alg": "RS256", "kid": ""}, claims()), "no_kid"),
    (raw({"alg": "RS256", "kid": 7}, claims()), "no_kid"),
    (raw({"alg": "RS256", "kid": OTHER.kid}, claims(), OTHER), "unknown_kid"),
    (raw(HEADER, claims(), OTHER), "bad_signature"),
    (raw(HEADER, claims(sub=None)), "bad_claims"),
    (raw(HEADER, claims(sub=42)), "bad_claims"),
    (raw(HEADER, claims(sub="")), "bad_claims"),
    (raw(HEADER, claims(sub="x" * 121)), "bad_claims"),
    (raw(HEADER, claims(exp=None)), "bad_claims"),
    (raw(HEADER, claims(exp="tomorrow")), "bad_claims"),
    (raw(HEADER, claims(exp=int(time.time()) - LEEWAY - 60)), "expired"),
    # a day ahead: the parameters are built at collection, minutes before a full suite runs this
    (raw(HEADER, claims(nbf=int(time.time()) + 86400)), "not_yet_valid"),
    (raw(HEADER, claims(iss="https://evil.example/")), "bad_issuer"),
    (raw(HEADER, claims(iss=None)), "bad_issuer"),
    (raw(HEADER, claims(aud=["https://other.example"])), "bad_audience"),
    (raw(HEADER, claims(aud=None)), "bad_audience"),
], ids=lambda v: v if isinstance(v, str) and len(v) < 20 else None)
def test_each_bad_token_has_its_reason(tok, why):
    assert reason(tok) == why


def test_a_tampered_payload_is_a_bad_signature():
    header, _, sig = token().split(".")
    forged = b64url(json.dumps(claims(permissions=["publish:events", "admin:sse"])).encode())
    assert reason(f"{header}.{forged}.{sig}") == "bad_signature"


@pytest.mark.parametrize("alg", ["RS512", "PS256"])
def test_an_asymmetric_algorithm_outside_the_allow_list_is_refused_even_with_the_right_key(alg):
    tok = jwt.encode({"alg": alg, "kid": KEY.kid}, claims(), KEY, algorithms=[alg])
    assert reason(tok) == "bad_algorithm"
    assert verifier(("RS256", alg)).verify(tok).sub == "auth0|alice"  # allowed, it verifies


def test_an_ec_token_under_a_known_rsa_kid_is_refused():
    tok = jwt.encode({"alg": "ES256", "kid": KEY.kid}, claims(), ECKey.generate_key("P-256"), algorithms=["ES256"])
    assert reason(tok) == "bad_algorithm"
    assert reason(tok, verifier(("RS256", "ES256"))) in ("malformed", "bad_signature")


def test_leeway_is_thirty_seconds_each_way():
    now = int(time.time())
    assert verifier().verify(token(exp=now - LEEWAY + 5)).sub == "auth0|alice"
    assert verifier().verify(token(nbf=now + LEEWAY - 5)).sub == "auth0|alice"
    assert verifier().verify(token(sub="x" * 120)).sub == "x" * 120  # 120 is the longest subject


def test_a_bad_token_is_refused_every_time_and_a_good_one_verifies_once():
    v = verifier()
    bad = raw(HEADER, claims(), OTHER)
    assert reason(bad, v) == "bad_signature" and reason(bad, v) == "bad_signature"
    good = token()
    assert v.verify(good) is v.verify(good)


@pytest.mark.parametrize(("header", "result"), [
    (None, "missing"), ("", "missing"), ("Basic abc", "malformed"), ("Bearer", "malformed"), ("Bearer    ", "malformed"),
    ("Token abc", "malformed"),
])
def test_bearer_refuses_what_is_not_a_bearer_token(header, result):
    with pytest.raises(AuthError) as caught:
        bearer(header)
    assert caught.value.reason == result


@pytest.mark.parametrize(("header", "tok"), [("Bearer abc", "abc"), ("bearer abc", "abc"), ("BEARER  abc ", "abc")])
def test_bearer_takes_the_token(header, tok):
    assert bearer(header) == tok


def test_identity_reads_its_own_user_channel_and_what_its_patterns_match():
    ident = Identity("alice", ("channel:*", "dm:alice-*"))
    assert ident.may_read("user:alice") and not ident.may_read("user:bob")
    assert ident.may_read("channel:general") and ident.may_read("dm:alice-bob")
    assert not ident.may_read("channel:a:b")  # * stops at ':'
    assert not ident.may_read("xchannel:general") and not ident.may_read("channel")
    assert not ident.may_read("dm:bob-alice")
    assert ident.forbidden(["channel:x", "user:alice", "dm:bob-alice", "secret"]) == ["dm:bob-alice", "secret"]
    assert not Identity("alice").can_publish and not Identity("alice").is_admin


def test_keysource_ignores_shared_secrets_and_encryption_keys_and_refetches_at_most_once_per_interval():
    now = [100.0]
    fetches: list[int] = []
    oct_key = OctKey.generate_key(256, auto_kid=True)
    enc = RSAKey.generate_key(2048, auto_kid=True)
    doc = {"keys": [KEY.as_dict(private=False), oct_key.as_dict(), {**enc.as_dict(private=False), "use": "enc"}]}

    def fetch() -> dict:
        fetches.append(1)
        return doc

    keys = KeySource(fetch, min_refresh=30.0, clock=lambda: now[0])
    assert keys.get(KEY.kid) is not None and len(fetches) == 1
    assert keys.get(oct_key.kid) is None and keys.get(enc.kid) is None
    assert len(fetches) == 1  # unknown kids within min_refresh: no refetch
    now[0] += 30
    assert keys.get("nope") is None and len(fetches) == 2


def test_keysource_keeps_its_keys_when_a_fetch_fails_and_retries_within_a_second_when_it_has_none():
    now = [100.0]
    answers: list[Any] = [RuntimeError("down"), {"keys": [KEY.as_dict(private=False)]}, RuntimeError("down again")]

    def fetch() -> dict:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    keys = KeySource(fetch, min_refresh=30.0, clock=lambda: now[0])
    assert keys.get(KEY.kid) is None  # down at start
    now[0] += 1.0  # with no key at all the retry comes after a second, not min_refresh
    assert keys.get(KEY.kid) is not None
    now[0] += 31
    assert keys.get("other") is None  # this fetch fails...
    assert keys.get(KEY.kid) is not None  # ...and the known key is kept
