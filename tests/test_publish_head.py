"""web/publish_head.parse: the usual publish's head is read; anything unusual is None (gunicorn's).

None is the safe answer (the request goes to gunicorn and Flask), so each case
that must not be read here is listed: a head this parser got wrong would be a
request answered differently from the rest of the service, or a smuggled one.
"""

from __future__ import annotations

import pytest

from chatgenius.web.publish_head import REQUEST_LINE, Head, parse

BODY = b'{"channel":"c","type":"message.created","data":{}}'
HEADERS = [
    b"Host: 127.0.0.1:8000",
    b"Authorization: Bearer a.b.c",
    b"Content-Type: application/json",
    b"Content-Length: %d" % len(BODY),
]


def request(*headers: bytes, line: bytes = REQUEST_LINE, body: bytes = BODY) -> bytes:
    return line + b"".join(h + b"\r\n" for h in headers) + b"\r\n" + body


def test_the_usual_publish_is_read_with_its_size_headers_and_length():
    data = request(*HEADERS)
    head = parse(data)
    assert head == Head(len(data) - len(BODY), {
        "host": "127.0.0.1:8000", "authorization": "Bearer a.b.c",
        "content-type": "application/json", "content-length": str(len(BODY)),
    }, len(BODY), False)
    assert data[head.size : head.size + head.length] == BODY


def test_names_are_case_blind_values_lose_surrounding_blanks_and_connection_close_is_kept():
    head = parse(request(b"content-LENGTH:\t 51 \t", b"AUTHORIZATION:Bearer x", b"Connection: Close"))
    assert head is not None and head.length == 51 and head.headers["authorization"] == "Bearer x" and head.close


def test_a_head_without_its_body_yet_is_read_and_a_pipelined_request_is_left_alone():
    assert parse(request(*HEADERS, body=b"")) is not None  # the body is the reader's to wait for
    two = request(*HEADERS) + request(*HEADERS)
    head = parse(two)
    assert head is not None and two[head.size + head.length :] == request(*HEADERS)


@pytest.mark.parametrize(
    "data",
    [
        request(*HEADERS, line=b"POST /events?x=1 HTTP/1.1\r\n"),
        request(*HEADERS, line=b"POST /events HTTP/1.0\r\n"),
        request(*HEADERS, line=b"POST /eventsx HTTP/1.1\r\n"),
        request(*HEADERS, line=b"PUT /events HTTP/1.1\r\n"),
        request(*HEADERS, line=b"post /events HTTP/1.1\r\n"),
        request(*HEADERS, line=b" POST /events HTTP/1.1\r\n"),
        request(*HEADERS)[:-len(BODY) - 2],  # the head has not ended yet
        request(*HEADERS[:3]),  # no Content-Length
        request(*HEADERS, b"Content-Length: 5"),  # twice
        request(*HEADERS, b"Authorization: Bearer other"),  # twice
        request(*HEADERS, b"Transfer-Encoding: chunked"),
        request(*HEADERS, b"transfer-encoding: identity"),
        request(*HEADERS, b"Expect: 100-continue"),
        request(*HEADERS, b"Upgrade: h2c"),
        request(*HEADERS, b"Origin: https://chat.example"),
        request(*HEADERS, b"Content-Encoding: gzip"),
        request(*HEADERS, b"Connection: Upgrade"),
        request(*HEADERS, b"Connection: keep-alive, Upgrade"),
        request(*HEADERS, b"X_Forwarded_For: 1.2.3.4"),  # gunicorn drops names with "_"
        request(*HEADERS, b"X-Note: a\rb"),  # a bare CR inside a value
        request(*HEADERS, b"X-Note: a\nX-Other: b"),  # a bare LF
        request(*HEADERS, b"X-Note: a\x00b"),
        request(*HEADERS, b"X-Note: a", b" folded"),  # obs-fold
        request(*HEADERS, b"X-Note a"),  # no colon
        request(*HEADERS, b"X Note: a"),  # a space in the name
        request(*HEADERS, b": a"),  # no name
        request(*HEADERS, b"X-Note : a"),  # a space before the colon
        request(*HEADERS[:3], b"Content-Length: +51"),
        request(*HEADERS[:3], b"Content-Length: 5 1"),
        request(*HEADERS[:3], b"Content-Length: 0x33"),
        request(*HEADERS[:3], "Content-Length: \u0665\u0661".encode()),  # Arabic-Indic digits
        request(*HEADERS[:3], b"Content-Length: \xb2"),  # latin-1 superscript two: isdigit() says yes
        request(*HEADERS[:3], b"Content-Length: "),
        request(*HEADERS[:3], b"Content-Length: " + b"9" * 19),  # more digits than any body
        request(*HEADERS[:3], b"Content-Length: " + b"1" * 5000),  # int() would refuse it
        b"GET /events HTTP/1.1\r\n\r\n",
        REQUEST_LINE + b"\r\n",
        b"",
    ],
)
def test_anything_unusual_is_none(data: bytes):
    assert parse(data) is None


def test_the_configured_limits_hand_over_too_many_or_too_long_lines():
    extra = [b"X-N%d: v" % i for i in range(10)]
    assert parse(request(*HEADERS, *extra), max_fields=14) is not None
    assert parse(request(*HEADERS, *extra), max_fields=13) is None
    long = b"X-Long: " + b"v" * 100
    # gunicorn's limit_request_field_size counts the line with its CRLF.
    assert parse(request(*HEADERS, long), max_line=len(long) + 2) is not None
    assert parse(request(*HEADERS, long), max_line=len(long) + 1) is None


def test_a_long_run_of_blanks_is_read_in_linear_time():
    """A value of thousands of spaces then a bad byte: the checks must not backtrack (a worker would stall)."""
    assert parse(request(*HEADERS, b"X-Note: " + b" " * 8000 + b"\x01"), max_line=9000) is None
    assert parse(request(*HEADERS, b"X-Note: " + b" \t" * 4000 + b"v"), max_line=9000) is not None
