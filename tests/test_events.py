"""Publisher input validation: the envelope, the catalog, limits, all-or-nothing batches."""

from __future__ import annotations

import enum
import json

import pytest

from chatgenius import events
from chatgenius.events import EventError, draft, drafts_from_request, envelope_json


def good(**overrides):
    return {"channel": "channel:general", "type": "message.created", "data": {"text": "hi"}, **overrides}


@pytest.mark.parametrize(
    "name, ok",
    [
        ("channel:general", True),
        ("dm:42-77", True),
        ("user:auth0|abc", True),
        ("workspace:7", True),
        ("workspace:7:admin", True),
        ("user:google-oauth2|1@x.y", True),
        ("Channel:general", False),
        ("general", False),
        ("channel:", False),
        ("channel:has space", False),
        ("channel:new\nline", False),
        ("channel:general\n", False),
        ("channel:" + "x" * 121, False),
        ("channel:{tag}", False),
        (7, False),
    ],
)
def test_channel_names_follow_the_contract(name, ok):
    assert events.valid_channel(name) is ok


def test_envelope_is_one_line_ascii_json_with_id_first():
    d = draft(good(data={"text": "a\nb\u2028é"}), 65536, now=1764432000.123)
    text = envelope_json("ep-5", d.body)
    assert "\n" not in text and text.isascii()
    parsed = json.loads(text)
    assert list(parsed) == ["id", "type", "channel", "data", "ts"]
    assert parsed == {"id": "ep-5", "type": "message.created", "channel": "channel:general",
                      "data": {"text": "a\nb\u2028é"}, "ts": 1764432000.123}


def test_ephemeral_envelope_has_no_id():
    d = draft(good(type="user.typing", data={"user_id": "u"}), 65536)
    assert not d.durable
    assert "id" not in json.loads(envelope_json(None, d.body))


def test_the_envelope_quotes_type_and_channel_as_json_would():
    """draft() writes both between quotes without json.dumps: right only while no valid channel
    holds a character JSON escapes; this fails if the channel rule ever lets one in."""
    allowed = "".join(c for c in map(chr, range(0x110000)) if events.valid_channel("a:" + c))
    assert allowed and json.dumps(allowed) == '"' + allowed + '"'
    for etype in sorted(events.CATALOG - events.SERVICE_TYPES):
        name = "dm:" + allowed[:120]
        body = draft(good(type=etype, channel=name), 65536, now=1.25).body
        assert body == (f',"type":{json.dumps(etype)},"channel":{json.dumps(name)},'
                        f'"data":{{"text":"hi"}},"ts":1.25}}')


def test_a_channel_given_as_a_str_subclass_is_written_as_its_text():
    """A str Enum (what a Python publisher may pass) formats as `Kind.ROOM` in an f-string; the
    envelope and the draft carry its text, as json.dumps would."""

    class Kind(str, enum.Enum):  # noqa: UP042 - not StrEnum: this one formats as "Kind.ROOM"
        ROOM = "channel:general"

    d = draft(good(channel=Kind.ROOM), 65536, now=1.25)
    assert json.loads("{" + d.body[1:])["channel"] == "channel:general"
    assert type(d.channel) is str and d.channel == "channel:general"


@pytest.mark.parametrize(
    "raw, code, status",
    [
        (good(type="message.exploded"), "bad_type", 400),
        (good(type="system.connected"), "bad_type", 400),
        (good(channel="nope"), "bad_channel", 400),
        (good(data=[1]), "bad_data", 400),
        (good(data="text"), "bad_data", 400),
        (good(data={"t": "x" * 70_000}), "too_large", 413),
        (good(data={"n": float("nan")}), "bad_data", 400),
        ({**good(), "extra": 1}, "bad_request", 400),
        ("not an object", "bad_request", 400),
    ],
)
def test_bad_events_are_refused_with_a_code(raw, code, status):
    with pytest.raises(EventError) as info:
        draft(raw, 65536)
    assert (info.value.code, info.value.status) == (code, status)


def test_nesting_deeper_than_the_limit_is_refused():
    deep: dict = {}
    node = deep
    for _ in range(events.MAX_DEPTH + 2):
        node["x"] = {}
        node = node["x"]
    with pytest.raises(EventError) as info:
        draft(good(data=deep), 65536)
    assert info.value.code == "bad_data"


def test_a_batch_is_all_or_nothing_and_names_the_bad_index():
    with pytest.raises(EventError) as info:
        drafts_from_request({"events": [good(), good(), good(type="nope")]}, 65536)
    assert str(info.value).startswith("events[2]:")
    assert len(drafts_from_request({"events": [good()] * 100}, 65536)) == 100
    with pytest.raises(EventError) as too_many:
        drafts_from_request({"events": [good()] * 101}, 65536)
    assert too_many.value.status == 413


@pytest.mark.parametrize("key", ["", " ", "a b", "x" * 256, "caf\u00e9", "tab\t", "nl\n", 7, None, ["k"]])
def test_a_bad_idempotency_key_is_refused(key):
    with pytest.raises(EventError) as info:
        draft({**good(), "idempotency_key": key}, 65536)
    assert (info.value.code, info.value.status) == ("bad_idempotency_key", 400)
    with pytest.raises(EventError) as header:
        events.idempotency_key(key)
    assert header.value.code == "bad_idempotency_key"


def test_an_event_key_is_kept_and_the_fingerprint_ignores_only_the_timestamp():
    keyed = draft({**good(), "idempotency_key": "order-1:\u0021~" + "x" * 245}, 65536, now=1.0)
    later = draft({**good(), "idempotency_key": "other"}, 65536, now=2.0)
    changed = draft({**good(data={"n": 2}), "idempotency_key": "other"}, 65536, now=1.0)
    assert keyed.key is not None and len(keyed.key) == 255 and draft(good(), 65536).key is None
    assert keyed.fingerprint == later.fingerprint != changed.fingerprint
    assert '"ts"' not in keyed.content and keyed.body.startswith(keyed.content)


def test_a_batch_with_two_events_of_one_key_is_refused():
    batch = {"events": [{**good(), "idempotency_key": "k"}, {**good(data={"n": 2}), "idempotency_key": "k"}]}
    with pytest.raises(EventError) as info:
        drafts_from_request(batch, 65536)
    assert info.value.code == "bad_idempotency_key"
    assert [d.key for d in drafts_from_request({"events": [{**good(), "idempotency_key": "k"}, good()]}, 65536)] == ["k", None]


def test_parse_channels_dedupes_and_limits():
    assert events.parse_channels("channel:a, channel:b,channel:a", 5) == ["channel:a", "channel:b"]
    with pytest.raises(EventError):
        events.parse_channels("channel:a,channel:b", 1)
    with pytest.raises(EventError):
        events.parse_channels("", 5)
