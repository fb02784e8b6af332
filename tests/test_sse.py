"""The SSE encoder: no value can add a line, a field or an event (table tests, as sse-starlette does)."""

from __future__ import annotations

import pytest
from support.sse_parse import EventParser, Frame

from chatgenius import sse


def parse(raw: bytes) -> list[Frame]:
    return [f for f in EventParser().feed(raw) if isinstance(f, Frame)]


@pytest.mark.parametrize(
    "data, lines",
    [
        ("plain", ["plain"]),
        ("", [""]),
        ("a\nb", ["a", "b"]),
        ("a\rb", ["a", "b"]),
        ("a\r\nb", ["a", "b"]),
        ("a\n\nevent: evil\n\nb", ["a", "", "event: evil", "", "b"]),
        ("trailing\n", ["trailing", ""]),
        ("\u2028sep\u2029", ["\u2028sep\u2029"]),
        ("nul\x00byte", ["nul\x00byte"]),
        ("é漢字🙂", ["é漢字🙂"]),
        ("x" * 200_000, ["x" * 200_000]),
    ],
)
def test_encode_splits_data_into_lines_and_stays_one_event(data, lines):
    raw = sse.encode(data, "message.created", "ep-1")
    assert raw.endswith(b"\n\n")
    assert raw.count(b"\ndata: ") + raw.startswith(b"data: ") == len(lines)
    frames = parse(raw)
    assert len(frames) == 1
    assert frames[0].event == "message.created" and frames[0].id == "ep-1"
    assert frames[0].data == "\n".join(lines)


@pytest.mark.parametrize("bad", ["a\nb", "a\rb", "a\x00b", "\r\n"])
@pytest.mark.parametrize("field", ["event", "id"])
def test_event_and_id_refuse_line_breaks_and_nul(field, bad):
    with pytest.raises(sse.FramingError):
        sse.encode("x", **{field: bad})


def test_durable_frame_matches_the_general_encoder():
    envelope = '{"id":"ep-7","type":"message.created","data":{"t":"\\n"}}'
    assert sse.durable_frame("ep-7", "message.created", envelope) == sse.encode(envelope, "message.created", "ep-7")


def test_durable_frame_with_a_raw_newline_falls_back_to_safe_encoding():
    frame = sse.durable_frame("ep-7", "message.created", "{\n}")
    assert len(parse(frame)) == 1 and parse(frame)[0].data == "{\n}"


def test_comment_and_retry_are_never_events():
    raw = sse.comment("hb\nevent: evil") + sse.retry(1500)
    assert parse(raw) == []
    parser = EventParser()
    parser.feed(raw)
    assert parser.retry == 1500
