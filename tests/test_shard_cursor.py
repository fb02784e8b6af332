"""The cluster cursor (chatgenius/shard_cursor.py): its form, its size bound, and per-shard positions."""

from __future__ import annotations

import pytest

from chatgenius.bus.cluster_shards import Layout
from chatgenius.cursor import CursorError
from chatgenius.shard_cursor import (
    MAX_SHARDS,
    Vector,
    is_single_redis,
    new_shard_epoch,
    pack,
    parse_vector,
    shard_of,
    stamp,
    stamp_replay,
    unpack,
)


def full_vector(shards: int, seq: int) -> Vector:
    return Vector({k: (new_shard_epoch(k), seq) for k in range(shards)})


def test_a_vector_round_trips_and_never_looks_like_a_single_redis_cursor():
    v = Vector({0: (new_shard_epoch(0), 0), 3: (new_shard_epoch(3), 123456789)})
    text = str(v)
    assert parse_vector(text, 8) == v and not is_single_redis(text)
    assert is_single_redis("abcdef-12")


def test_the_largest_cursor_stays_under_200_bytes():
    assert len(str(full_vector(MAX_SHARDS, 36**8 - 1))) <= 200
    with pytest.raises(ValueError):
        Layout(MAX_SHARDS + 1)


@pytest.mark.parametrize("raw", ["", "x", "0abcd", "0abcd1.0abcd2", "9abcd1", "0abcd1.", "0ABCD1", "0abcd" + "z" * 9])
def test_malformed_cursors_are_refused(raw):
    with pytest.raises(CursorError):
        parse_vector(raw, 8)  # no seq, a shard twice, a shard past 8, empty entry, upper case, seq too long


def test_positions_advance_per_shard_and_drop_what_was_seen():
    v = Vector({1: ("1aaaa", 5), 2: ("2bbbb", 9)})
    assert not v.advance(pack(1, 5)) and v.advance(pack(1, 6))
    assert v.advance(pack(2, 10)) and not v.advance(pack(2, 3))
    assert not v.advance(pack(4, 1))  # a shard the stream does not read
    assert v.positions == {1: ("1aaaa", 6), 2: ("2bbbb", 10)}
    assert unpack(pack(13, 77)) == (13, 77) and pack(5, 0) == 0


def test_stamp_gives_each_stream_its_own_id_over_a_shared_body():
    body = b'event: message.created\ndata: {"id":"1aaaa-6"}\n\n'
    a, b = Vector({1: ("1aaaa", 5)}), Vector({1: ("1aaaa", 5), 2: ("2bbbb", 1)})
    assert stamp(a, pack(1, 6), body) == b"id: 1aaaa6\n" + body
    assert stamp(b, pack(1, 6), body) == b"id: 1aaaa6.2bbbb1\n" + body
    assert stamp(a, pack(1, 6), body) is None  # a duplicate
    assert stamp(a, 0, b"event: user.typing\n") == b"event: user.typing\n"


def test_channels_spread_over_shards_and_shard_tags_over_the_slot_space():
    counts = [0] * 8
    for n in range(8000):
        counts[shard_of(f"channel:{n}", 8)] += 1
    assert min(counts) > 800
    layout = Layout(8)
    slots = [s.slot for s in layout.shards]
    assert all(k * 2048 <= slot < (k + 1) * 2048 for k, slot in enumerate(slots))
    assert layout.of("channel:x").index == shard_of("channel:x", 8)
    assert layout.live_name(layout.of("channel:x").live("channel:x").encode()) == (layout.of("channel:x"), "channel:x")


def test_replayed_frames_carry_ids_from_the_cursor_and_end_at_the_head():
    one, two = b'event: e\ndata: {"id":"1aaaa-7"}\n\n', b'event: e\ndata: {"id":"2cccc-2"}\n\n'
    cursor = Vector({1: ("1aaaa", 5), 2: ("2bbbb", 9)})
    head = Vector({1: ("1aaaa", 8), 2: ("2cccc", 3)})  # shard 2 lost its data: a new epoch
    frames, position = stamp_replay(cursor, head, [(pack(1, 7), one), (pack(2, 2), two)])
    assert frames == [b"id: 1aaaa7.2cccc0\n" + one, b"id: 1aaaa7.2cccc2\n" + two]
    assert position == head and stamp(position, pack(1, 8), one) is None


def test_a_frame_of_a_shard_new_to_the_stream_starts_its_position_there():
    body = b'event: e\ndata: {"id":"3xyzw-41","type":"e"}\n\n'
    v = Vector({1: ("1aaaa", 5)})
    assert stamp(v, pack(3, 41), body) == b"id: 1aaaa5.3xyzw15\n" + body  # 41 is 15 in base 36
    assert v.positions[3] == ("3xyzw", 41) and stamp(v, pack(3, 41), body) is None


def test_a_cluster_stream_drops_a_live_frame_it_replayed_already():
    # The replay/live overlap on Redis Cluster: a live frame at or below the stream's position is
    # dropped (CLOSED), the next one is queued with its id line. Compiled (make compiled), the
    # subscriber once raised TypeError here, which ended the bus reader and every local stream.
    from chatgenius.subscriber import Subscriber
    from chatgenius.wire import CLOSED, QUEUED

    sub = Subscriber("s1", "u", ["channel:a"], 1 << 20)
    sub.set_position(Vector({1: ("1aaaa", 5)}))
    old, new = b'event: e\ndata: {"id":"1aaaa-5"}\n\n', b'event: e\ndata: {"id":"1aaaa-6"}\n\n'
    assert sub.offer(pack(1, 5), old) == CLOSED
    assert sub.offer(pack(1, 6), new) == QUEUED
    assert sub.take(0) == [(pack(1, 6), b"id: 1aaaa6\n" + new)]
