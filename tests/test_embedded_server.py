"""`python app.py` (`make run`) for a person at a terminal: a busy port is one line and a non-zero exit,
Ctrl-C ends it quietly even with a stream open, logs are text on a terminal and JSON otherwise."""

from __future__ import annotations

import json
import os
import pty
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from support.http_json import get_json
from support.procs import REPO_ROOT, free_port, wait_until
from support.service import dev_token, publish
from support.sse_client import SSEClient

TEXT_LINE = re.compile(r"^\d\d:\d\d:\d\d info +connection\.open .*user_id=alice", re.M)


def test_a_busy_port_is_one_line_and_a_non_zero_exit() -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        done = subprocess.run([sys.executable, "app.py"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
                              env={"PATH": os.environ["PATH"], "BIND": f"127.0.0.1:{port}"})
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr == f"cannot listen on 127.0.0.1:{port}: Address already in use (set BIND to another host:port)\n"


@dataclass
class Embedded:
    """A running `python app.py`; its output is read without blocking (the tests run under gevent's patching)."""

    proc: subprocess.Popen[bytes]
    base: str
    fd: int
    tty: bool
    output: bytearray = field(default_factory=bytearray)

    def text(self) -> str:
        while True:
            try:
                chunk = os.read(self.fd, 65536)
            except (BlockingIOError, OSError):  # nothing yet, or EIO once the terminal's last writer closed
                break
            if not chunk:
                break
            self.output.extend(chunk)
        return self.output.decode(errors="replace").replace("\r\n", "\n")


def start(tty: bool) -> Embedded:
    """python app.py with stdout and stderr on a new pseudo-terminal (tty) or on a pipe."""
    port = free_port()
    env = {"PATH": os.environ["PATH"], "BIND": f"127.0.0.1:{port}"}
    if tty:
        fd, out = pty.openpty()
    else:
        fd, out = os.pipe()
    proc = subprocess.Popen([sys.executable, "app.py"], cwd=REPO_ROOT, env=env, stdin=subprocess.DEVNULL,
                            stdout=out, stderr=out, start_new_session=True)
    os.close(out)
    os.set_blocking(fd, False)
    server = Embedded(proc, f"http://127.0.0.1:{port}", fd, tty)
    wait_until(lambda: get_json(f"{server.base}/healthz")[0] == 200, 20, 0.1, "python app.py answers", ignore=(OSError,))
    return server


@pytest.fixture(params=[True, False], ids=["terminal", "pipe"])
def embedded(request: pytest.FixtureRequest) -> Iterator[Embedded]:
    server = start(tty=request.param)
    try:
        yield server
    finally:
        if server.proc.poll() is None:
            server.proc.kill()
        server.proc.wait(10)
        os.close(server.fd)


def test_ctrl_c_ends_it_quietly_with_a_stream_open_and_logs_suit_the_output(embedded: Embedded) -> None:
    token = dev_token(embedded.base, "alice", ["channel:*"], ["publish:events"])
    stream = SSEClient(f"{embedded.base}/stream?channels=channel:general", {"Authorization": f"Bearer {token}"})
    try:
        assert stream.next(5).event == "system.connected"
        publish(embedded.base, token, "channel:general", {"text": "hi"})
        assert stream.read_until(lambda f: f.event == "message.created", 5)
        wait_until(lambda: "connection.open" in embedded.text(), 10, 0.05, "the connection.open log line")
        embedded.proc.send_signal(signal.SIGINT)
        assert embedded.proc.wait(15) == 0
        assert stream.wait_closed(10)
    finally:
        stream.close()
    out = embedded.text()
    assert "Traceback" not in out and "KeyboardInterrupt" not in out, out
    banner, *logs = out.strip().split("\n")
    assert banner.startswith(f"ChatGenius realtime: {embedded.base}/ (bus: memory, auth: dev")
    if embedded.tty:
        assert TEXT_LINE.search(out), out
        assert not [line for line in logs if line.startswith("{")], out
    else:
        opened = [json.loads(line) for line in logs if '"connection.open"' in line]
        assert opened and opened[0]["user_id"] == "alice" and opened[0]["level"] == "info"
