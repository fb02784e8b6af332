"""The exact bytes of an event, pinned: on the wire (live and replayed), in Redis history and on
the Redis live feed, for both buses and for presence's embedded publish.

The envelope is made in Python (events.envelope_parts) and the frame in chatgenius/sse.py;
lua/publish.lua only splices in the cursor it assigns. These literals were taken from the
code before that split, so a refactor of either side that changes one byte fails here.
"""

from __future__ import annotations

import time

import gevent
import pytest
import redis

from chatgenius.bus.memory import MemoryBus
from chatgenius.cursor import Cursor
from chatgenius.events import draft
from chatgenius.presence.base import Lease
from chatgenius.presence.memory import MemoryPresence
from chatgenius.presence.redis import RedisPresence
from chatgenius.subscriber import Subscriber

from .test_contract import collect, make_bus

EPOCH = "golden1"
TS = 1764432000.123456
BODY = ',"type":"message.created","channel":"channel:a","data":{"text":"h\\u00e9 \\"q\\"","n":1},"ts":1764432000.123456}'
TYPING = b'{"type":"user.typing","channel":"channel:a","data":{"user":"u1"},"ts":1764432000.123456}'
PRESENCE = b',"type":"user.presence","channel":"channel:a","data":{"user_id":"bob","status":"online"},"ts":1764432000.123456}'


def envelope(seq: int, body: bytes = BODY.encode()) -> bytes:
    return b'{"id":"golden1-' + str(seq).encode() + b'"' + body


def durable(seq: int, body: bytes = BODY.encode(), etype: bytes = b"message.created") -> bytes:
    cursor = b"golden1-" + str(seq).encode()
    return b"id: " + cursor + b"\nevent: " + etype + b"\ndata: " + envelope(seq, body) + b"\n\n"


EPHEMERAL = b"event: user.typing\ndata: " + TYPING + b"\n\n"


def drafts():
    message = draft({"channel": "channel:a", "type": "message.created", "data": {"text": 'h\u00e9 "q"', "n": 1}}, 65536, now=TS)
    typing = draft({"channel": "channel:a", "type": "user.typing", "data": {"user": "u1"}}, 65536, now=TS)
    return [message, typing, message]


def presence_draft(channel: str, user: str, status: str):
    return draft({"channel": channel, "type": "user.presence", "data": {"user_id": user, "status": status}}, 65536, now=TS)


@pytest.fixture(params=["memory", "redis"])
def golden_bus(request):
    url = request.getfixturevalue("redis_url") if request.param == "redis" else None
    if url is not None:
        with redis.Redis.from_url(url) as client:
            client.set("cg:epoch", EPOCH)
            # Written by this Redis in its role (lua/publish.lua's writer fence): no new epoch.
            client.set("cg:epoch:writer", f"{client.info('server')['run_id']} {client.info('replication')['master_replid']}")
    bus = make_bus(request.param, url)
    if isinstance(bus, MemoryBus):
        bus.epoch = EPOCH
    yield bus, url
    bus.close()


def test_durable_ephemeral_and_replayed_bytes_are_pinned(golden_bus) -> None:
    bus, url = golden_bus
    feed = None
    if url is not None:  # what the Redis live feed itself carries
        feed = redis.Redis.from_url(url).pubsub()
        feed.subscribe("cg:l:channel:a")
        assert feed.get_message(timeout=2)["type"] == "subscribe"
    s = Subscriber(f"s-{time.monotonic_ns()}", "u", ["channel:a"], 1 << 20)
    bus.attach(s, ["channel:a"])
    assert bus.publish(drafts()) == ["golden1-1", None, "golden1-2"]
    assert collect(s, 3) == [(1, durable(1)), (0, EPHEMERAL), (2, durable(2))]
    replay = bus.replay(["channel:a"], Cursor(EPOCH, 0), 10)
    assert [r.frame for r in replay.events] == [durable(1), durable(2)]
    assert [r.envelope.encode() for r in replay.events] == [envelope(1), envelope(2)]
    if feed is not None:
        live = []
        deadline = time.monotonic() + 5
        while len(live) < 3 and time.monotonic() < deadline:
            msg = feed.get_message(timeout=0.1)
            if msg is not None and msg["type"] == "message":
                live.append(msg["data"])
        feed.close()
        assert live == [
            b"golden1-1\nmessage.created\n" + envelope(1),
            b"\nuser.typing\n" + TYPING,
            b"golden1-2\nmessage.created\n" + envelope(2),
        ]
        with redis.Redis.from_url(url) as client:
            history = client.xrange("cg:h:{channel:a}")
        assert history == [
            (b"1-0", {b"t": b"message.created", b"e": envelope(1)}),
            (b"2-0", {b"t": b"message.created", b"e": envelope(2)}),
        ]


def test_presence_publishes_the_same_bytes(golden_bus) -> None:
    bus, url = golden_bus
    s = Subscriber(f"s-{time.monotonic_ns()}", "u", ["channel:a"], 1 << 20)
    bus.attach(s, ["channel:a"])
    store = MemoryPresence(bus) if url is None else RedisPresence(bus)
    assert store.join([Lease("channel:a", "bob", "c1")], 30, presence_draft) == [True]
    gevent.sleep(0)
    assert collect(s, 1) == [(1, durable(1, PRESENCE, b"user.presence"))]
    [record] = bus.replay(["channel:a"], Cursor(EPOCH, 0), 10).events
    assert record.frame == durable(1, PRESENCE, b"user.presence")
