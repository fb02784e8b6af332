"""gunicorn_worker.PublishWorker under the pinned gunicorn: the usual publish is answered on the lean path.

The lean path reads a publish off the socket itself; every other request is
gunicorn's, one at a time, and the worker looks again after each (save where a
client pipelined past one of gunicorn's requests). These tests run the
real gunicorn with the shipped gunicorn.conf.py and tell the paths apart by
chatgenius_publish_requests_total{path}: "server" (the worker's own reading),
"wsgi" (web/publish_fast before Flask) and "flask". If a gunicorn upgrade
stopped the worker from taking the lean path, the first test fails.
"""

from __future__ import annotations

import http.client
import json
import socket
import time
from collections.abc import Iterator

import pytest
from support.gunicorn import Gunicorn
from support.procs import wait_until
from support.redis_server import RedisServer
from support.service import bearer, dev_token, publish_request_counts, service_env
from support.sse_client import SSEClient

CHAN = "channel:lean"
EVENT = {"channel": CHAN, "type": "message.created", "data": {"text": "hi"}}
VARYING = {"Date", "X-Request-ID", "Content-Length"}


@pytest.fixture(scope="module")
def server(redis_server: RedisServer) -> Iterator[Gunicorn]:
    with redis_server.client() as client:
        client.flushall()
    with Gunicorn(workers=1, env=service_env(redis_server.url)) as g:
        yield g


@pytest.fixture(scope="module")
def tokens(server: Gunicorn) -> dict[str, str]:
    return {
        "pub": dev_token(server.base_url, "pub", ["channel:*"], ["publish:events"]),
        "reader": dev_token(server.base_url, "reader", ["channel:*"]),
        "ops": dev_token(server.base_url, "ops", [], ["admin:sse"]),
    }


def counts(server: Gunicorn, ops: str) -> dict[str, float]:
    return publish_request_counts(server.base_url, ops)


def grew(g: Gunicorn, ops: str, before: dict[str, float], **expected: int) -> dict[str, float]:
    """Wait for the counters (flushed once a second) to have grown by `expected`, then return the growth."""
    growth: dict[str, float] = {}

    def reached() -> bool:
        now = counts(g, ops)
        growth.update({k: now.get(k, 0) - before.get(k, 0) for k in ("server", "wsgi", "flask")})
        return all(growth[k] >= n for k, n in expected.items())

    wait_until(reached, timeout=10)
    time.sleep(1.2)  # one more flush: nothing else may have been counted
    now = counts(g, ops)
    return {k: now.get(k, 0) - before.get(k, 0) for k in ("server", "wsgi", "flask")}


def head_and_body(token: str, body: bytes, *extra: bytes, path: bytes = b"/events") -> tuple[bytes, bytes]:
    head = b"POST %b HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer %b\r\nContent-Type: application/json\r\nContent-Length: %d\r\n" % (
        path, token.encode(), len(body))
    return head + b"".join(h + b"\r\n" for h in extra) + b"\r\n", body


def read_answers(sock: socket.socket, n: int) -> list[tuple[int, dict[str, str], bytes]]:
    """`n` HTTP answers of known length off `sock`."""
    f = sock.makefile("rb")
    out = []
    for _ in range(n):
        line = f.readline()
        assert line, "the server closed the connection without an answer"
        status = int(line.split()[1])
        headers = {}
        while (line := f.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip()] = value.strip()
        out.append((status, headers, f.read(int(headers["Content-Length"]))))
    return out


def test_usual_publishes_on_a_kept_alive_connection_take_the_lean_path(server: Gunicorn, tokens: dict[str, str]):
    """http.client sends head and body in two writes: the lean path waits for the body itself."""
    before = counts(server, tokens["ops"])
    with SSEClient(f"{server.base_url}/stream?channels={CHAN}", bearer(tokens["reader"]), timeout=10) as client:
        assert client.status == 200
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        ids = []
        for n in range(20):
            conn.request("POST", "/events", json.dumps({**EVENT, "data": {"n": n}}),
                         {**bearer(tokens["pub"]), "Content-Type": "application/json"})
            resp = conn.getresponse()
            assert resp.status == 201 and resp.getheader("Connection") == "keep-alive"
            ids += json.loads(resp.read())["ids"]
        conn.close()
        got = []
        while len(got) < 20:
            frame = client.next(5.0)
            assert frame is not None, got
            if frame.event == "message.created":
                got.append((frame.id, frame.json()["data"]["n"]))
        assert got == list(zip(ids, range(20)))
    assert grew(server, tokens["ops"], before, server=20) == {"server": 20, "wsgi": 0, "flask": 0}


def test_answers_are_the_same_as_flasks(server: Gunicorn, tokens: dict[str, str]):
    """Each answer of the lean path against the same request sent through Flask (a query string sends it there)."""
    cases = [
        (tokens["pub"], json.dumps(EVENT).encode()),
        (tokens["pub"], json.dumps({**EVENT, "type": "no.such"}).encode()),
        (tokens["reader"], json.dumps(EVENT).encode()),  # no publish permission: 403
        (tokens["pub"], b"{not json"),
        (tokens["pub"], b"null"),
        (tokens["pub"], b"[" * 50000),
        (tokens["pub"], json.dumps({"events": [EVENT, {**EVENT, "type": "user.typing"}]}).encode()),
    ]
    before = counts(server, tokens["ops"])
    for token, body in cases:
        answers = []
        for path in (b"/events", b"/events?via=flask"):
            with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
                sock.sendall(b"".join(head_and_body(token, body, path=path)))
                status, headers, raw = read_answers(sock, 1)[0]
            answer = json.loads(raw)
            answer.pop("ids", None)  # new ids each time
            answers.append((status, {k: v for k, v in headers.items() if k not in VARYING}, answer))
        assert answers[0] == answers[1], body[:40]
    assert grew(server, tokens["ops"], before, server=len(cases), flask=len(cases)) == {
        "server": len(cases), "wsgi": 0, "flask": len(cases)}


def test_request_ids_idempotency_keys_and_content_types_as_flask_has_them(server: Gunicorn, tokens: dict[str, str]):
    before = counts(server, tokens["ops"])
    body = json.dumps(EVENT).encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"".join(head_and_body(tokens["pub"], body, b"X-Request-ID: trace-42", b"Idempotency-Key: order-9")))
        sock.sendall(b"".join(head_and_body(tokens["pub"], body, b"Idempotency-Key: order-9")))
        sock.sendall(b"".join(head_and_body(tokens["pub"], body, b"Idempotency-Key: has space")))
        first, again, bad = read_answers(sock, 3)
    assert first[0] == again[0] == 201 and first[1]["X-Request-ID"] == "trace-42"
    assert json.loads(again[2]) == json.loads(first[2]) and again[1]["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first[1]
    assert bad[0] == 400 and json.loads(bad[2])["error"] == "bad_idempotency_key"
    assert grew(server, tokens["ops"], before, server=3) == {"server": 3, "wsgi": 0, "flask": 0}
    # Types Flask does not take as JSON are refused alike on both paths; application/*+json is JSON to both.
    before = counts(server, tokens["ops"])
    for content_type, status in (("application/jsonp", 400), ("text/json", 400), ("application/cloudevents+json", 201)):
        answers = []
        for path in (b"/events", b"/events?via=flask"):
            head = b"POST %b HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer %b\r\nContent-Type: %b\r\nContent-Length: %d\r\n\r\n" % (
                path, tokens["pub"].encode(), content_type.encode(), len(body))
            with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
                sock.sendall(head + body)
                answer = read_answers(sock, 1)[0]
            answers.append((answer[0], json.loads(answer[2]).get("error")))
        assert answers[0] == answers[1] and answers[0][0] == status, content_type
    # The two refused types were handed to Flask on the lean path too; the third the lean path answered.
    assert grew(server, tokens["ops"], before, server=1, flask=5) == {"server": 1, "wsgi": 0, "flask": 5}


def test_heads_gunicorn_refuses_are_still_refused(server: Gunicorn, tokens: dict[str, str]):
    """Whatever gunicorn answers with a 400 must not be published by the lean path instead."""
    before = counts(server, tokens["ops"])
    body = json.dumps(EVENT).encode()
    heads = [
        b"POST /events HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer %b\r\nContent-Type: application/json\r\n"
        b"Content-Length: %b\r\n\r\n" % (tokens["pub"].encode(), b"1" * 5000),
        b"".join(head_and_body(tokens["pub"], body, b"X-Forwarded-Proto: https", b"X-Forwarded-Ssl: off"))[:-len(body)],
        b"".join(head_and_body(tokens["pub"], body, b"X-Long: " + b"v" * 8181))[:-len(body)],  # 8,190 with its CRLF
    ]
    statuses = []
    for head in heads:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(head + body)
            line = sock.makefile("rb").readline()
            statuses.append(int(line.split()[1]) if line else None)
    assert all(s is not None and 400 <= s < 500 for s in statuses), statuses
    assert grew(server, tokens["ops"], before) == {"server": 0, "wsgi": 0, "flask": 0}


def test_a_body_sent_late_pipelined_requests_and_connection_close(server: Gunicorn, tokens: dict[str, str]):
    before = counts(server, tokens["ops"])
    one = b"".join(head_and_body(tokens["pub"], json.dumps(EVENT).encode()))
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        head, body = head_and_body(tokens["pub"], json.dumps(EVENT).encode())
        sock.sendall(head)
        time.sleep(0.3)  # the head alone has arrived: the lean path waits for the body
        sock.sendall(body[:5])
        time.sleep(0.1)
        sock.sendall(body[5:] + one + one)  # and then two more in one write
        answers = read_answers(sock, 3)
        assert [a[0] for a in answers] == [201, 201, 201]
        seqs = [int(json.loads(a[2])["ids"][0].rsplit("-", 1)[1]) for a in answers]
        assert seqs == sorted(seqs) and len(set(seqs)) == 3
        closing = b"".join(head_and_body(tokens["pub"], json.dumps(EVENT).encode(), b"Connection: close"))
        sock.sendall(closing)
        status, headers, _ = read_answers(sock, 1)[0]
        assert status == 201 and headers["Connection"] == "close"
        assert sock.recv(1) == b""  # closed by the server
    assert grew(server, tokens["ops"], before, server=4) == {"server": 4, "wsgi": 0, "flask": 0}


def test_a_head_that_arrives_in_two_parts_is_gunicorns_with_the_part_read_handed_back(
    server: Gunicorn, tokens: dict[str, str]
):
    """The lean path reads what has come; a head cut short is not one it can read, so gunicorn gets
    those bytes back (its parser's unread) and reads the rest itself."""
    before = counts(server, tokens["ops"])
    usual = b"".join(head_and_body(tokens["pub"], json.dumps(EVENT).encode()))
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(usual[:30])
        time.sleep(0.3)  # the lean path has read these 30 bytes
        sock.sendall(usual[30:])
        first = read_answers(sock, 1)[0]
        sock.sendall(usual)  # a whole one: the lean path again
        second = read_answers(sock, 1)[0]
    assert first[0] == second[0] == 201
    ids = [json.loads(a[2])["ids"][0] for a in (first, second)]
    assert len(set(ids)) == 2
    assert grew(server, tokens["ops"], before, server=1, wsgi=1) == {"server": 1, "wsgi": 1, "flask": 0}


def test_other_requests_go_to_gunicorn_with_every_byte_and_the_lean_path_comes_back(
    server: Gunicorn, tokens: dict[str, str]
):
    usual = b"".join(head_and_body(tokens["pub"], json.dumps(EVENT).encode()))
    health = b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n"
    chunked_body = json.dumps(EVENT).encode()
    chunked = (
        b"POST /events HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer %b\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n%x\r\n%b\r\n0\r\n\r\n" % (tokens["pub"].encode(), len(chunked_body), chunked_body)
    )
    # One at a time (as nginx sends them upstream): after each of gunicorn's requests the lean path is back.
    before = counts(server, tokens["ops"])
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        statuses = []
        for one in (usual, health, usual, chunked, usual):
            sock.sendall(one)
            statuses.append(read_answers(sock, 1)[0][0])
    assert statuses == [201, 200, 201, 201, 201]
    assert grew(server, tokens["ops"], before, server=3, flask=1) == {"server": 3, "wsgi": 0, "flask": 1}
    # Pipelined: gunicorn reads past the health check, so the rest of the connection is its own
    # (web/publish_fast answers the usual publish there, Flask the chunked one).
    before = counts(server, tokens["ops"])
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(usual + health + usual + chunked)
        answers = read_answers(sock, 4)
    assert [a[0] for a in answers] == [201, 200, 201, 201]
    assert grew(server, tokens["ops"], before, server=1, wsgi=1, flask=1) == {"server": 1, "wsgi": 1, "flask": 1}


def test_a_smuggling_attempt_is_gunicorns_to_refuse_and_publishes_nothing(server: Gunicorn, tokens: dict[str, str]):
    before = counts(server, tokens["ops"])
    hidden = b"".join(head_and_body(tokens["pub"], json.dumps(EVENT).encode()))
    body = b"0\r\n\r\n" + hidden
    attack = (
        b"POST /events HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer %b\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\nTransfer-Encoding: chunked\r\n\r\n%b" % (tokens["pub"].encode(), len(body), body)
    )
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(attack)
        status = int(sock.makefile("rb").readline().split()[1])
    assert status == 400
    assert grew(server, tokens["ops"], before) == {"server": 0, "wsgi": 0, "flask": 0}


def test_a_bad_token_is_flasks_to_refuse_with_its_reason(server: Gunicorn, tokens: dict[str, str]):
    before = counts(server, tokens["ops"])
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"".join(head_and_body(tokens["pub"] + "x", json.dumps(EVENT).encode())))
        status, _, body = read_answers(sock, 1)[0]
    assert status == 401 and json.loads(body)["error"] == "unauthorized"
    assert wait_until(lambda: any(
        line.get("event") == "auth.fail" and line.get("reason") in ("bad_signature", "malformed")
        for line in server.json_logs()), timeout=5)
    assert grew(server, tokens["ops"], before, flask=1) == {"server": 0, "wsgi": 0, "flask": 1}


def test_each_wait_for_a_next_publish_has_the_whole_keepalive_and_an_idle_connection_is_closed(redis_url: str):
    """Publishes 0.35 s apart under --keep-alive 1 (1.75 s of waiting in all, on one connection) are all
    answered; a connection then idle past 1 s is closed by the worker. (libev resumes a stopped
    timer from what was left of it: a reused timer started again would have closed it mid-way.)"""
    with Gunicorn(workers=1, env=service_env(redis_url), args=["--keep-alive", "1"]) as g:
        token = dev_token(g.base_url, "pub", ["channel:*"], ["publish:events"])
        usual = b"".join(head_and_body(token, json.dumps(EVENT).encode()))
        with socket.create_connection(("127.0.0.1", g.port), timeout=10) as sock:
            statuses = []
            for _ in range(5):
                time.sleep(0.35)
                sock.sendall(usual)
                statuses.append(read_answers(sock, 1)[0][0])
            assert statuses == [201] * 5
            started = time.monotonic()
            assert sock.recv(1) == b"", "the keep-alive wait ran out: the worker closed the connection"
            assert 0.8 <= time.monotonic() - started < 5


def test_max_requests_closes_the_connection_after_the_last_and_the_worker_is_replaced(redis_url: str):
    """gunicorn's --max-requests counts the lean path's publishes too (its health checks and the token count as well)."""
    with Gunicorn(workers=1, env=service_env(redis_url), args=["--max-requests", "20"]) as g:
        token = dev_token(g.base_url, "pub", ["channel:*"], ["publish:events"])
        first = g.worker_pids()
        one = b"".join(head_and_body(token, json.dumps(EVENT).encode()))
        connections = []
        with socket.create_connection(("127.0.0.1", g.port), timeout=10) as sock:
            for _ in range(20):
                sock.sendall(one)
                status, headers, _ = read_answers(sock, 1)[0]
                assert status == 201
                connections.append(headers["Connection"])
                if headers["Connection"] == "close":
                    break
            assert sock.recv(1) == b""  # closed by the server after its last answer
        assert connections[-1] == "close" and set(connections[:-1]) == {"keep-alive"} and len(connections) >= 10
        assert wait_until(lambda: g.worker_pids() and g.worker_pids() != first, timeout=20)


def test_a_stopping_worker_still_answers_gunicorns_requests_on_its_open_connections(redis_url: str):
    """After a HUP the old worker closes its listeners but serves the connections it holds until they
    end: a request gunicorn handles there is answered (with Connection: close), not dropped."""
    with Gunicorn(workers=1, env=service_env(redis_url)) as g:
        token = dev_token(g.base_url, "pub", ["channel:*"], ["publish:events"])
        old = g.worker_pids()
        with socket.create_connection(("127.0.0.1", g.port), timeout=10) as sock:
            sock.sendall(b"".join(head_and_body(token, json.dumps(EVENT).encode())))
            assert read_answers(sock, 1)[0][0] == 201  # the lean path holds this connection
            g.hup(wait=False)
            assert wait_until(lambda: g.worker_pids() and set(g.worker_pids()) != set(old), timeout=20)
            time.sleep(1.5)  # the old worker's run loop closes its listener within a second of stopping
            assert any(p.pid in old and p.is_running() for p in g.processes_seen()), "the old worker is still draining"
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
            status, headers, _ = read_answers(sock, 1)[0]
        assert status in (200, 503) and headers["Connection"] == "close"
        assert not [line for line in g.log_lines() if "Socket error processing request" in line]


def test_a_body_that_never_comes_after_gunicorns_answer_ends_with_the_keepalive_wait(server: Gunicorn, tokens: dict[str, str]):
    """Flask refuses a bad token without reading the body; the rest of a body that never comes is
    waited for as gunicorn waits for a next request (`keepalive`, 5 s here), then the connection closes."""
    head, body = head_and_body(tokens["pub"] + "x", json.dumps(EVENT).encode())
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(head + body[:10])
        status, _, _ = read_answers(sock, 1)[0]
        assert status == 401
        assert sock.recv(1) == b""  # closed by the server, well before this socket's own 30 s
