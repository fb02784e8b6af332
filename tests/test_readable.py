"""readable.Readable: a wait for one socket's bytes with a timeout, on watchers reused from wait to wait."""

from __future__ import annotations

import time

import gevent
from gevent import socket

from chatgenius.readable import Readable


def test_a_wait_ends_when_bytes_come_or_when_its_timeout_runs_out_and_can_be_repeated():
    a, b = socket.socketpair()
    readable = Readable(a.fileno())
    try:
        assert readable.wait(0.05) is False, "nothing sent: the timeout ends the wait"
        gevent.spawn_later(0.05, b.send, b"x")
        assert readable.wait(5) is True
        assert a.recv(10) == b"x"
        assert readable.wait(0.05) is False, "the bytes were read: nothing to wake for"
        assert readable.wait(0.02) is False, "another timeout value: its own timer"
        b.send(b"yz")
        assert readable.wait(None) is True, "bytes already there: no wait beyond the loop's turn"
    finally:
        readable.close()
        a.close()
        b.close()


def test_a_timer_that_fired_does_not_end_the_next_wait_early():
    a, b = socket.socketpair()
    readable = Readable(a.fileno())
    try:
        assert readable.wait(0.05) is False
        gevent.spawn_later(0.2, b.send, b"x")
        assert readable.wait(1.0) is True, "the 1 s timer, not the spent 0.05 s one"
        assert a.recv(10) == b"x"
        assert readable.wait(0.05) is False
        gevent.spawn_later(0.1, b.send, b"y")
        assert readable.wait(0.5) is True
    finally:
        readable.close()
        a.close()
        b.close()


def test_every_wait_has_its_whole_timeout_however_long_the_waits_before_it_were():
    """libev keeps the rest of a stopped timer; a wait must not inherit what earlier waits left of it.
    Three waits of 0.12 s under a 0.3 s timeout: the third would have ended at 0.06 s with False."""
    a, b = socket.socketpair()
    readable = Readable(a.fileno())
    try:
        for _ in range(3):
            gevent.spawn_later(0.12, b.send, b"x")
            started = time.monotonic()
            assert readable.wait(0.3) is True, "data came within the timeout"
            assert time.monotonic() - started >= 0.1
            assert a.recv(10) == b"x"
        started = time.monotonic()
        assert readable.wait(0.3) is False
        assert time.monotonic() - started >= 0.25, "the whole timeout, not what was left of it"
    finally:
        readable.close()
        a.close()
        b.close()


def test_the_watcher_stays_started_between_waits_and_bytes_that_come_meanwhile_end_the_next_wait_at_once():
    """Started once (no epoll_ctl per wait); when it fires with nobody waiting it stops (a readable
    socket fires every turn) and the next wait returns True without waiting; it holds the loop only
    while someone waits."""
    a, b = socket.socketpair()
    readable = Readable(a.fileno())
    try:
        gevent.spawn_later(0.02, b.send, b"x")
        assert readable.wait(1.0) is True
        assert readable._io.active and not readable._io.ref, "still started, and not holding the loop"
        assert a.recv(10) == b"x"
        b.send(b"y")  # arrives while nobody waits
        gevent.sleep(0.05)  # turns of the loop: the watcher fires, finds no waiter, stops
        assert not readable._io.active
        started = time.monotonic()
        assert readable.wait(1.0) is True
        assert time.monotonic() - started < 0.5
        assert a.recv(10) == b"y"
        assert readable.wait(0.05) is False, "read: the restarted watcher waits for new bytes"
        assert readable._io.active
        # True can mean "may be readable": another reader took the bytes; the caller reads, gets
        # nothing (EAGAIN) and waits again, and that wait is a real one.
        b.send(b"z")
        gevent.sleep(0.05)
        assert a.recv(10) == b"z"
        assert readable.wait(1.0) is True
        started = time.monotonic()
        assert readable.wait(0.1) is False
        assert time.monotonic() - started >= 0.08
    finally:
        readable.close()
        a.close()
        b.close()
