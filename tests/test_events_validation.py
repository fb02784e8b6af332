"""Event validation at its edges (chatgenius/events.py): the exact limits, every error code, batch shapes.

Written against the survivors of the first mutation run (docs/TESTING.md): each
case pins a boundary or a code a mutant could move without another test noticing.
"""

from __future__ import annotations

import json

import pytest

from chatgenius import events
from chatgenius.events import MAX_BATCH, MAX_DEPTH, EventError, draft, drafts_from_request, parse_channels


def good(**overrides):
    return {"channel": "channel:general", "type": "message.created", "data": {"text": "hi"}, **overrides}


def nested(levels: int) -> dict:
    """A dict `levels` deep: nested(1) == {"x": 1}."""
    value: object = 1
    for _ in range(levels):
        value = {"x": value}
    return value  # type: ignore[return-value]


def refused(raw: object, max_bytes: int = 65536) -> EventError:
    with pytest.raises(EventError) as caught:
        draft(raw, max_bytes)
    return caught.value


# -- channels= of a stream or poll ---------------------------------------------------------
def test_parse_channels_keeps_order_strips_and_drops_empties_and_duplicates():
    assert parse_channels(" channel:b ,channel:a,,channel:b, ", 5) == ["channel:b", "channel:a"]


@pytest.mark.parametrize("raw", [None, "", ",", " , "])
def test_parse_channels_requires_at_least_one(raw):
    with pytest.raises(EventError) as caught:
        parse_channels(raw, 5)
    assert (caught.value.code, caught.value.status) == ("bad_channels", 400)


def test_parse_channels_names_the_first_bad_one():
    with pytest.raises(EventError) as caught:
        parse_channels("channel:ok,Bad Name,also bad", 5)
    assert caught.value.code == "bad_channels" and "'Bad Name'" in str(caught.value)


def test_parse_channels_limit_is_inclusive():
    names = ",".join(f"channel:c{i}" for i in range(3))
    assert len(parse_channels(names, 3)) == 3
    with pytest.raises(EventError) as caught:
        parse_channels(names, 2)
    assert (caught.value.code, caught.value.status) == ("too_many_channels", 400)
    assert "at most 2 channels" in str(caught.value)


def test_the_longest_channel_name_is_120_characters_after_the_colon():
    assert events.valid_channel("c:" + "x" * 120) and not events.valid_channel("c:" + "x" * 121)
    assert events.valid_channel("a-b_c9:x") and not events.valid_channel("9a:x") and not events.valid_channel("a:")


# -- one event -------------------------------------------------------------------------------
def test_data_may_be_exactly_max_depth_deep_not_one_more():
    assert draft(good(data=nested(MAX_DEPTH)), 65536).channel == "channel:general"
    error = refused(good(data=nested(MAX_DEPTH + 1)))
    assert error.code == "bad_data" and f"deeper than {MAX_DEPTH}" in str(error)


def test_depth_counts_lists_and_empty_containers_too():
    deep_list: object = []
    for _ in range(MAX_DEPTH):
        deep_list = [deep_list]
    assert refused(good(data={"l": deep_list})).code == "bad_data"  # the empty list at the bottom is a level
    assert draft(good(data={"l": [], "d": {}}), 65536)


def test_data_of_exactly_max_bytes_is_accepted_one_more_is_too_large():
    data = {"t": "x" * 100}
    size = len(events.dumps(data))
    assert draft(good(data=data), size)
    error = refused(good(data=data), size - 1)
    assert (error.code, error.status) == ("too_large", 413) and f"{size} bytes" in str(error)


def test_missing_data_is_an_empty_object_and_the_body_is_exact():
    d = draft({"channel": "channel:general", "type": "message.created"}, 65536, now=12.5)
    assert d.body == ',"type":"message.created","channel":"channel:general","data":{},"ts":12.5}'
    assert d.durable and d.channel == "channel:general" and d.type == "message.created"


def test_ts_is_rounded_to_microseconds():
    assert json.loads(events.envelope_json("e-1", draft(good(), 65536, now=1.23456789).body))["ts"] == 1.234568


@pytest.mark.parametrize(("raw", "code"), [
    ({"type": "message.created", "data": {}}, "bad_channel"),
    (good(channel=None), "bad_channel"),
    (good(type=None), "bad_type"),
    (good(type=7), "bad_type"),
    (good(data=None), "bad_data"),
    (good(data={"f": float("inf")}), "bad_data"),
    (good(data={"s": {1, 2}}), "bad_data"),
    ({**good(), "id": "forged"}, "bad_request"),
    ([good()], "bad_request"),
])
def test_each_bad_event_has_its_code(raw, code):
    error = refused(raw)
    assert (error.code, error.status) == (code, 400), error


# Frames the server sends to one connection: not in the catalog, so never publishable.
@pytest.mark.parametrize("etype", ["system.connected", "system.reset", "system.fallback", "system.reauth", "system.reconnect"])
def test_a_publisher_can_never_send_a_connection_frame(etype):
    assert refused(good(type=etype)).code == "bad_type"


def test_every_catalog_type_is_accepted_and_only_typing_is_ephemeral():
    for etype in sorted(events.CATALOG):
        d = draft(good(type=etype), 65536)
        assert d.durable is (etype not in events.EPHEMERAL_TYPES)


# -- a request ----------------------------------------------------------------------------------
def test_a_single_event_is_a_batch_of_one_with_its_own_message():
    assert [d.channel for d in drafts_from_request(good(), 65536)] == ["channel:general"]
    with pytest.raises(EventError) as caught:
        drafts_from_request(good(type="nope"), 65536)
    assert not str(caught.value).startswith("events[")  # one event: no index


@pytest.mark.parametrize("payload", [{"events": []}, {"events": "x"}, {"events": None}, {"events": [good()], "x": 1}])
def test_a_batch_must_be_a_non_empty_list_with_nothing_beside_it(payload):
    with pytest.raises(EventError) as caught:
        drafts_from_request(payload, 65536)
    assert (caught.value.code, caught.value.status) == ("bad_request", 400)


def test_the_batch_limit_is_inclusive_and_its_error_is_413():
    assert len(drafts_from_request({"events": [good()] * MAX_BATCH}, 65536)) == MAX_BATCH
    with pytest.raises(EventError) as caught:
        drafts_from_request({"events": [good()] * (MAX_BATCH + 1)}, 65536)
    assert (caught.value.code, caught.value.status) == ("too_many_events", 413)


def test_a_bad_event_in_a_batch_keeps_its_code_and_status_and_names_its_index():
    with pytest.raises(EventError) as caught:
        drafts_from_request({"events": [good(), good(data={"t": "x" * 200})]}, 100)
    assert (caught.value.code, caught.value.status) == ("too_large", 413)
    assert str(caught.value).startswith("events[1]: data is ")


def test_one_batch_shares_one_timestamp():
    out = drafts_from_request({"events": [good(), good(channel="channel:x")]}, 65536)
    stamps = {json.loads(events.envelope_json("e-1", d.body))["ts"] for d in out}
    assert len(stamps) == 1
