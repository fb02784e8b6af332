"""The README's walkthrough, run as written: against `python app.py` (what `make run` starts) on a free
port given through BIND, the copy-pasted commands open a stream, publish, and the stream shows the event."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.http_json import get_json
from support.procs import REPO_ROOT, free_port, require_binary, spawn, tail, terminate_tree, wait_until


def walkthrough() -> str:
    """The README's one shell block that publishes "hello from curl", verbatim."""
    blocks = re.findall(r"^```sh\n(.*?)^```", (REPO_ROOT / "README.md").read_text(), re.S | re.M)
    (block,) = [b for b in blocks if "hello from curl" in b]
    return block


@pytest.fixture
def embedded(tmp_path: Path) -> Iterator[str]:
    bind = f"127.0.0.1:{free_port()}"
    env = {"PATH": os.environ["PATH"], "BIND": bind}
    log = tmp_path / "app.log"
    proc = spawn([sys.executable, "app.py"], log, REPO_ROOT, env)
    try:
        wait_until(lambda: get_json(f"http://{bind}/healthz")[0] == 200, 20, 0.1, "python app.py answers", ignore=(OSError,))
        yield bind
    finally:
        terminate_tree(proc, signal.SIGTERM, 10)
    assert proc.returncode == 0, tail(log)


def test_readme_walkthrough_shows_the_published_event_on_the_stream(embedded: str) -> None:
    require_binary("curl", shutil.which("curl"))
    shell = subprocess.Popen(["bash", "-c", walkthrough()], env={"PATH": os.environ["PATH"], "BIND": embedded},
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(shell.stdout.readline, "")), daemon=True)
    reader.start()

    def shown() -> str:
        # The stream can show the event before the publishing curl has printed its answer: wait for both.
        text = "".join(lines)
        return text if re.search(r"^data: .*hello from curl", text, re.M) and '{"ids":["' in text else ""

    try:
        text = wait_until(shown, 20, 0.05, "the stream shows the event and the publish its answer")
    finally:
        os.killpg(shell.pid, signal.SIGTERM)  # the background curl is in the same, new session
        shell.wait(10)
        reader.join(5)
    assert "event: system.connected" in text and '{"ids":["' in text
    assert re.search(r"^event: message\.created\ndata: \{.*\"text\":\"hello from curl\"", text, re.M), text
