"""The shipped nginx.conf says what the SSE path needs, even where the app's headers would cover for it.

The app's `X-Accel-Buffering: no` already stops this nginx from buffering, so
the end-to-end tests cannot tell whether the config itself is right; these
checks read the directives, so a "cleanup" of the file cannot drop them unseen.
"""

from __future__ import annotations

import re

import pytest

from .conftest import NGINX_CONF

TEXT = NGINX_CONF.read_text()
CODE = "\n".join(line.split("#", 1)[0] for line in TEXT.splitlines())  # no comments (no '#' in our values)


def block(head: str) -> str:
    """The body of the first `head {` block (braces matched)."""
    start = CODE.index(head + " {") + len(head) + 2
    depth = 1
    for i in range(start, len(CODE)):
        depth += {"{": 1, "}": -1}.get(CODE[i], 0)
        if depth == 0:
            return CODE[start:i]
    raise AssertionError(f"unclosed block {head!r}")


def directives(body: str) -> dict[str, list[str]]:
    """Top-level directives of a block body (nested blocks skipped): name -> argument strings."""
    flat, depth = [], 0
    for ch in body:
        depth += {"{": 1, "}": -1}.get(ch, 0)
        if depth == 0 and ch != "}":
            flat.append(ch)
    out: dict[str, list[str]] = {}
    for statement in "".join(flat).split(";"):
        words = statement.split(None, 1)
        if words:
            out.setdefault(words[0], []).append(words[1].strip() if len(words) > 1 else "")
    return out


def seconds(value: str) -> int:
    match = re.fullmatch(r"(\d+)(s|m|h)?", value)
    assert match, value
    return int(match.group(1)) * {"s": 1, None: 1, "m": 60, "h": 3600}[match.group(2)]


def test_stream_location_neither_buffers_nor_compresses_nor_times_out_early():
    stream = directives(block("location = /stream"))
    assert stream["proxy_buffering"] == ["off"]
    assert stream["proxy_cache"] == ["off"]
    assert stream["gzip"] == ["off"]
    assert 'Connection ""' in stream["proxy_set_header"]
    assert "Last-Event-ID $http_last_event_id" in stream["proxy_set_header"]
    assert "X-Request-ID $chatgenius_request_id" in stream["proxy_set_header"]
    assert stream["proxy_pass_header"] == ["X-Accel-Buffering"]
    # Four default heartbeats (HEARTBEAT_INTERVAL=15) at the least.
    assert seconds(stream["proxy_read_timeout"][0]) >= 60
    server = directives(block("server"))
    assert server["proxy_http_version"] == ["1.1"]


def test_poll_outlasts_the_longest_poll():
    assert seconds(directives(block("location = /poll"))["proxy_read_timeout"][0]) > 30


def test_events_accepts_a_full_batch():
    size = directives(block("location = /events"))["client_max_body_size"][0]
    assert size.endswith("m") and int(size[:-1]) >= 7  # 100 x 64 KB events, JSON-escaped


@pytest.mark.parametrize("variable", ["$request_uri", "$args", "$query_string", "$arg_", "$request ", "$http_referer"])
def test_access_log_format_cannot_hold_a_query_string(variable: str):
    formats = re.findall(r"log_format\s+\w+\s+((?:'[^']*'\s*)+);", CODE)
    assert formats
    for fmt in formats:
        assert variable not in fmt + " "
    assert all("realtime" in args for args in directives(block("http"))["access_log"])


def test_upstream_balances_on_open_streams_across_workers():
    upstream = directives(block("upstream chatgenius_realtime"))
    assert "least_conn" in upstream and upstream["zone"]
    assert seconds(upstream["keepalive_timeout"][0]) < 5  # below gunicorn's keepalive (gunicorn.conf.py)


def test_connection_limits_are_sized_for_many_streams():
    top = directives(CODE)
    events = directives(block("events"))
    connections = int(events["worker_connections"][0])
    assert connections >= 16384
    assert int(top["worker_rlimit_nofile"][0]) >= connections
