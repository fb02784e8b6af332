"""The publish script's round trip (bus/redis_script.Script) read off its socket (bus/redis_replies.Replies),
against a real Redis: a nil reply is an answer, not a timeout; error replies raise as redis-py's;
a lost script cache is run again with EVAL; an answer that does not come in time is a TimeoutError
and the next call starts on a new connection."""

from __future__ import annotations

import os
import socket
import time

import pytest
import redis

from chatgenius.bus.redis_replies import Replies
from chatgenius.bus.redis_script import MAX_IDLE, Script

SOURCE = """
if ARGV[1] == 'nil' then return nil end
if ARGV[1] == 'fail' then return redis.error_reply('QUOTA over the limit') end
if ARGV[1] == 'spin' then
  local until_ = tonumber(redis.call('TIME')[1]) * 1e6 + tonumber(redis.call('TIME')[2]) + tonumber(ARGV[2] or '600') * 1000
  while true do
    local now = redis.call('TIME')
    if tonumber(now[1]) * 1e6 + tonumber(now[2]) > until_ then break end
  end
  return 'late'
end
return {ARGV[1], redis.call('INCR', KEYS[1])}
"""


def idle_replies(script: Script) -> list[Replies]:
    return list(script._idle)


def test_answers_nil_and_error_replies_on_the_direct_path(redis_url):
    script = Script(redis.Redis.from_url(redis_url), SOURCE)
    try:
        assert script(["cg:test:n"], ["a"]) == [b"a", 1]
        assert [r.direct for r in idle_replies(script)] == [True], "the service's connections read off the socket"
        assert script(["cg:test:n"], ["nil"]) is None, "a nil reply is an answer, not a timeout"
        with pytest.raises(redis.ResponseError, match="QUOTA"):
            script(["cg:test:n"], ["fail"])
        assert len(idle_replies(script)) == 1, "an error reply leaves the connection clean: kept"
        assert script(["cg:test:n"], ["b"]) == [b"b", 2]
    finally:
        script.close()


def test_a_flushed_script_cache_runs_the_script_again(redis_url):
    script = Script(redis.Redis.from_url(redis_url), SOURCE)
    try:
        assert script(["cg:test:f"], ["a"]) == [b"a", 1]
        redis.Redis.from_url(redis_url).script_flush()
        assert script(["cg:test:f"], ["b"]) == [b"b", 2]
    finally:
        script.close()


def test_an_answer_late_beyond_the_socket_timeout_is_a_timeout_and_the_connection_is_dropped(redis_url):
    script = Script(redis.Redis.from_url(redis_url, socket_timeout=0.2), SOURCE)
    try:
        assert script(["cg:test:t"], ["a"]) == [b"a", 1]
        with pytest.raises(redis.TimeoutError):
            script(["cg:test:t"], ["spin"])  # Redis answers after 0.6 s
        assert idle_replies(script) == [], "a connection with an answer in flight is never reused"
        time.sleep(0.6)  # Redis runs the script to its end before it serves anyone
        assert script(["cg:test:t"], ["b"]) == [b"b", 2], "the next call reads its own answer, not the late one"
    finally:
        script.close()


def test_a_dropped_connection_stops_watching_its_socket(redis_url):
    """A connection's watcher stays started between waits (readable.py); whoever drops the connection
    stops it (Replies.close) instead of relying on gevent's close of the socket to fire it. Dropped
    on a timeout, beyond the idle bound, or by close(): each stops its watcher."""
    script = Script(redis.Redis.from_url(redis_url, socket_timeout=0.2), SOURCE)
    try:
        assert script(["cg:test:d"], ["a"]) == [b"a", 1]
        (kept,) = idle_replies(script)
        watcher = kept._readable._io
        assert watcher.active, "started by the wait, and left started for the next"
        with pytest.raises(redis.TimeoutError):
            script(["cg:test:d"], ["spin", "400"])  # on the kept connection: dropped
        assert not watcher.active and kept._readable is None
        time.sleep(0.5)
        many = [script._new_connection() for _ in range(MAX_IDLE + 1)]
        for replies in many:
            replies.send("PING")
            assert replies.answer() == b"PONG"
            script._keep(replies)
        assert [r._readable is None for r in many] == [False] * MAX_IDLE + [True], "one past the bound: dropped"
        watchers = [r._readable._io for r in idle_replies(script)]
        script.close()
        assert not any(w.active for w in watchers)
    finally:
        script.close()


def test_answers_slower_in_all_than_the_socket_timeout_are_each_waited_for_in_full(redis_url):
    """Each answer gets the whole socket timeout: four answers of 0.15 s under a 0.5 s timeout on one
    connection (0.6 s of waiting in all) are answers, not a timeout on the fourth."""
    script = Script(redis.Redis.from_url(redis_url, socket_timeout=0.5), SOURCE)
    try:
        for _ in range(4):
            assert script(["cg:test:w"], ["spin", "150"]) == b"late"
        assert len(idle_replies(script)) == 1, "one connection served them all"
    finally:
        script.close()


def test_a_connection_class_that_reads_its_own_way_is_read_through_it(redis_url):
    class OwnRead(redis.Connection):
        def read_response(self, *args, **kwargs):
            return super().read_response(*args, **kwargs)

    url = redis.connection.parse_url(redis_url)
    conn = OwnRead(host=url.get("host", "127.0.0.1"), port=url.get("port", 6379))
    conn.connect()
    try:
        replies = Replies(conn)
        assert not replies.direct
        conn.send_command("PING")
        assert replies.answer() == b"PONG"
        replies.close()
    finally:
        conn.disconnect()


def test_a_command_the_socket_takes_in_parts_arrives_whole_and_unpackable_values_are_refused(redis_url):
    """Replies.send writes once and hands what the socket did not take to redis-py; a value hiredis
    cannot pack is redis-py's DataError and nothing is sent."""
    client = redis.Redis.from_url(redis_url)
    conn = client.connection_pool.get_connection()
    try:
        conn._sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)  # a small buffer: a partial send
        replies = Replies(conn)
        assert replies.direct
        value = os.urandom(4 << 20)
        replies.send("SET", "cg:test:big", value)
        assert replies.answer() == b"OK"
        with pytest.raises(redis.DataError):
            replies.send("SET", "cg:test:bad", object())
        replies.send("STRLEN", "cg:test:big")
        assert replies.answer() == len(value), "the connection is clean after the refusal"
        assert client.get("cg:test:big") == value
        replies.close()
    finally:
        client.connection_pool.release(conn)
        client.close()
