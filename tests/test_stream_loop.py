"""The stream loop itself (stream.open_session / serve), fast, against the in-process bus.

The seam between replay and live is where a resume can lose or repeat an
event: open_session attaches first (live frames queue) and then reads history,
so an event published in between is both in the replay and in the queue. These
tests publish exactly there (a bus whose replay publishes first) and read what
serve() writes, as a client would: every event once, in order, none missing.
"""

from __future__ import annotations

import gevent
from support.stream_loop import CHAN, RacingBus, ev, frames_of, ids

from chatgenius.bus.memory import MemoryBus
from chatgenius.cursor import parse
from chatgenius.stream import StreamSession, open_session, serve
from chatgenius.subscriber import Subscriber


def open_(bus: MemoryBus, after: str | None) -> tuple[StreamSession, Subscriber]:
    sub = Subscriber("s", "u", [CHAN], 1 << 20)
    session = open_session(bus, sub, parse(after) if after else None, 1000, 3600.0, 1000, None)
    return session, sub


def run(session: StreamSession) -> tuple[gevent.Greenlet, list[bytes]]:
    """Serve `session` in its own greenlet (as the server would); returns it and what it wrote so far."""
    written: list[bytes] = []
    loop = gevent.spawn(lambda: written.extend(serve(session, {"connection_id": "s"})))
    gevent.sleep(0)
    return loop, written


def finish(sub: Subscriber, loop: gevent.Greenlet, written: list[bytes]) -> list[dict[str, str]]:
    sub.end("test", b"event: test.end\ndata: {}\n\n")
    loop.join(5)
    assert loop.dead and loop.successful()
    frames = frames_of(b"".join(written))
    assert frames[0]["event"] == "system.connected" and frames[-1]["event"] == "test.end"
    return frames


def test_an_event_published_between_attach_and_replay_goes_out_once():
    bus = RacingBus()
    cursor = bus.publish([ev(0)])[0]
    bus.publish([ev(1), ev(2)])
    bus.race = [ev(3), ev(4)]  # in the queue (attached) and in the replay (history read after)
    session, sub = open_(bus, cursor)
    head = session.floor
    loop, written = run(session)
    live = bus.publish([ev(5)])[0]
    frames = finish(sub, loop, written)
    assert ids(frames) == list(range(parse(cursor).seq + 1, parse(live).seq + 1))
    assert ids(frames)[-2] == head  # the last raced event is the floor itself: kept once, not dropped


def test_frames_queued_before_the_loop_starts_are_filtered_at_the_floor_not_beyond():
    # The queue holds raced events (at or below the floor) and live ones above it when serve() starts.
    bus = RacingBus()
    cursor = bus.publish([ev(0)])[0]
    bus.race = [ev(1)]
    session, sub = open_(bus, cursor)
    queued_live = bus.publish([ev(2), ev(3)])  # before the loop runs: queued, above the floor
    loop, written = run(session)
    frames = finish(sub, loop, written)
    assert ids(frames) == [session.floor, *(parse(i).seq for i in queued_live)]
    assert session.floor == parse(cursor).seq + 1


def test_an_event_queued_between_the_history_read_and_the_floor_is_kept():
    # Redis: the reader can queue the next event while open_session waits for the MULTI's reply.
    bus = RacingBus()
    cursor = bus.publish([ev(0)])[0]
    bus.race = [ev(1)]
    bus.behind = [ev(2)]
    session, sub = open_(bus, cursor)
    assert sub.depth == 1  # queued before set_floor, one above the floor
    loop, written = run(session)
    frames = finish(sub, loop, written)
    assert ids(frames) == [session.floor, session.floor + 1]


def test_raced_events_whose_live_frames_arrive_after_the_replay_are_dropped_once_at_the_floor():
    bus = RacingBus()
    cursor = bus.publish([ev(0)])[0]
    bus.late = []
    bus.race = [ev(1), ev(2)]
    session, sub = open_(bus, cursor)
    loop, written = run(session)
    bus.deliver_late()  # their frames reach the stream now, after the replay holding them went out
    live = parse(bus.publish([ev(3)])[0]).seq
    frames = finish(sub, loop, written)
    assert ids(frames) == [live - 2, live - 1, live]


def test_live_events_after_the_replay_are_each_sent_once_in_order():
    bus = RacingBus()
    cursor = bus.publish([ev(0)])[0]
    session, sub = open_(bus, cursor)
    loop, written = run(session)
    sent = []
    for n in range(1, 20):
        sent.append(parse(bus.publish([ev(n)])[0]).seq)
        if n % 5 == 0:
            gevent.sleep(0)  # some while the loop is waiting, some while it has a backlog
    frames = finish(sub, loop, written)
    assert ids(frames) == sent


def test_ephemeral_frames_inside_the_overlap_are_not_taken_for_replayed_ones():
    bus = RacingBus()
    cursor = bus.publish([ev(0)])[0]
    bus.race = [ev(1), ev(2, "user.typing")]  # seq 0: never in history, must come from the queue
    session, sub = open_(bus, cursor)
    loop, written = run(session)
    frames = finish(sub, loop, written)
    assert [f["event"] for f in frames[1:-1]] == ["message.created", "user.typing"]
    assert ids(frames) == [parse(cursor).seq + 1]


def test_a_fresh_stream_without_a_cursor_replays_nothing_and_gets_every_live_event():
    bus = RacingBus()
    bus.publish([ev(0)])
    bus.race = [ev(1)]  # before the head is read: not for a stream that asked for no history
    session, sub = open_(bus, None)
    assert session.floor == 0
    loop, written = run(session)
    live = [parse(i).seq for i in bus.publish([ev(2), ev(3)])]
    frames = finish(sub, loop, written)
    # The raced event was published after attach, so it is live for this stream: sent once.
    assert ids(frames) == [live[0] - 1, *live]
