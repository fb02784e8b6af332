"""Framing safety, proven by properties: no publisher input can add a line, a field or an event.

Every property parses the server's bytes back with the test suite's own
spec-exact parser (support.sse_parse), so "one event out" is checked the way
a browser would see it, not by looking for newlines.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.sse_parse import Comment, EventParser, Frame

from chatgenius.events import CATALOG, DURABLE_TYPES, MAX_DEPTH, EventError, draft, drafts_from_request, envelope_json, valid_channel
from chatgenius.sse import FramingError, comment, durable_frame, encode, ephemeral_frame, frame_from_live

PROPS = settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])

# Text that stresses framing: line breaks of every kind, NUL and other controls, U+2028/2029, BOM, astral chars.
NASTY = st.sampled_from(["\n", "\r", "\r\n", "\n\n", "\x00", "\x1b", "\u2028", "\u2029", "\ufeff", "\x85", "data: x", "event: evil",
                         "id: 1", "retry: 1", ":", "\U0001f600", "\\", '"'])
TEXT = st.lists(st.one_of(st.text(max_size=8), NASTY), max_size=8).map("".join)
JSON_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**63), st.floats(allow_nan=False, allow_infinity=False), TEXT)
JSON_DATA = st.dictionaries(
    TEXT, st.recursive(JSON_SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4), max_leaves=20),
    max_size=5,
)
CHANNELS = st.one_of(
    st.sampled_from(["channel:general", "dm:42-77", "user:auth0|abc", "workspace:7", "channel:a.b@c_d-e"]),
    st.from_regex(r"\A[a-z][a-z0-9_-]{0,6}:[A-Za-z0-9_.:|@-]{1,20}\Z"),
)
CURSORS = st.from_regex(r"\A[a-z0-9]{4,16}-[0-9]{1,18}\Z")


def parse(raw: bytes) -> list[Frame | Comment]:
    return EventParser().feed(raw)


@PROPS
@given(data=st.text(), event=st.one_of(st.none(), st.text()), id=st.one_of(st.none(), st.text()))
def test_encode_yields_exactly_one_event_or_refuses(data: str, event: str | None, id: str | None):
    unsafe = any(v is not None and re.search(r"[\r\n\x00]", v) for v in (event, id))
    if unsafe:
        with pytest.raises(FramingError):
            encode(data, event, id)
        return
    items = parse(encode(data, event, id))
    assert items == [Frame(data=re.sub(r"\r\n|\r|\n", "\n", data), event=event or "message", id=id)]


@PROPS
@given(text=st.text())
def test_a_comment_is_one_comment(text: str):
    assert parse(comment(text)) == [Comment(" " + re.sub(r"\r\n|\r|\n", " ", text))]


@PROPS
@given(channel=CHANNELS, etype=st.sampled_from(sorted(CATALOG)), data=JSON_DATA, cursor=CURSORS)
def test_published_event_is_one_frame_of_one_ascii_line(channel: str, etype: str, data: dict[str, Any], cursor: str):
    d = draft({"channel": channel, "type": etype, "data": data}, 1 << 20)
    envelope = envelope_json(cursor if d.durable else None, d.body)
    raw = durable_frame(cursor, d.type, envelope) if d.durable else ephemeral_frame(d.type, envelope)
    raw.decode("ascii")  # every non-ASCII char is escaped: U+2028/2029 never reach the wire raw
    assert raw.endswith(b"\n\n") and raw.count(b"\n") == (4 if d.durable else 3)
    [frame] = parse(raw)
    assert frame.event == etype and frame.id == (cursor if d.durable else None)
    assert "\n" not in frame.data
    body = json.loads(frame.data)
    assert body["data"] == data and body["channel"] == channel and body["type"] == etype
    assert ("id" in body) == d.durable and body.get("id", cursor) == cursor

    # The Redis live feed carries '<cursor>\n<type>\n<envelope>' and rebuilds the same bytes without parsing JSON.
    live = f"{cursor if d.durable else ''}\n{etype}\n{envelope}".encode()
    assert frame_from_live(live)[-1] == raw


@PROPS
@given(
    raw=st.one_of(
        st.dictionaries(st.sampled_from(["channel", "type", "data", "extra"]), st.one_of(JSON_SCALARS, JSON_DATA, CHANNELS,
                        st.sampled_from(sorted(CATALOG | {"system.reauth", "system.connected"})))),
        JSON_SCALARS,
        st.lists(JSON_SCALARS, max_size=3),
    )
)
def test_any_publisher_input_is_a_valid_draft_or_an_event_error(raw: Any):
    try:
        d = draft(raw, 4096)
    except EventError as exc:
        assert exc.status in (400, 413) and exc.code
        return
    assert valid_channel(d.channel) and d.type in CATALOG
    assert "\n" not in d.body and "\r" not in d.body
    d.body.encode("ascii")


@PROPS
@given(name=st.text(max_size=40))
def test_a_valid_channel_name_holds_no_control_or_space(name: str):
    if valid_channel(name):
        assert re.fullmatch(r"[a-z][a-z0-9_-]*:[A-Za-z0-9_.:|@-]{1,120}", name)


@pytest.mark.parametrize(
    "name", ["channel:a\n", "channel:a\r", "channel:a\x00", "channel:a b", "channel:\u2028", "Channel:a", "channel:", ""]
)
def test_channel_syntax_is_exact(name: str):
    assert not valid_channel(name)
    with pytest.raises(EventError):
        draft({"channel": name, "type": "message.created", "data": {}}, 4096)


@pytest.mark.parametrize("etype", ["message.created\nevent: evil", "system.reauth", "system.connected", "message.created ", "", None, 5])
def test_type_must_be_in_the_catalog_and_connection_frames_cannot_be_forged(etype: object):
    with pytest.raises(EventError) as err:
        draft({"channel": "channel:a", "type": etype, "data": {}}, 4096)
    assert err.value.code == "bad_type"


def test_nesting_deeper_than_the_limit_is_refused():
    data: dict[str, Any] = {}
    cursor = data
    for _ in range(MAX_DEPTH + 2):
        cursor["x"] = {}
        cursor = cursor["x"]
    with pytest.raises(EventError) as err:
        draft({"channel": "channel:a", "type": "message.created", "data": data}, 1 << 20)
    assert err.value.code == "bad_data"


def test_size_over_max_event_bytes_is_413():
    with pytest.raises(EventError) as err:
        draft({"channel": "channel:a", "type": "message.created", "data": {"t": "x" * 200}}, 128)
    assert err.value.status == 413 and err.value.code == "too_large"


@PROPS
@given(good=st.integers(0, 5), bad_at=st.integers(0, 5), bad=st.sampled_from([
    {"channel": "channel:a\n", "type": "message.created", "data": {}},
    {"channel": "channel:a", "type": "system.reauth", "data": {}},
    {"channel": "channel:a", "type": "message.created", "data": []},
    {"channel": "channel:a", "type": "message.created", "data": {"t": "x" * 300}},
    {"channel": "channel:a", "type": "message.created", "data": {}, "id": "1-1"},
    "not an object",
]))
def test_a_batch_with_one_bad_event_yields_nothing(good: int, bad_at: int, bad: Any):
    events: list[Any] = [{"channel": "channel:a", "type": sorted(DURABLE_TYPES)[0], "data": {"n": n}} for n in range(good)]
    events.insert(min(bad_at, len(events)), bad)
    with pytest.raises(EventError) as err:
        drafts_from_request({"events": events}, 256)
    assert f"events[{min(bad_at, good)}]" in str(err.value) or len(events) == 1
