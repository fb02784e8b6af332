"""Numbers the docs state about the shipped files, read from those files (a doc that drifts fails here)."""

from __future__ import annotations

import re

from support.procs import REPO_ROOT

README = (REPO_ROOT / "README.md").read_text()
UNIT = (REPO_ROOT / "deploy/chatgenius-realtime.service").read_text()
GUNICORN_CONF = (REPO_ROOT / "gunicorn.conf.py").read_text()


def graceful_timeout_default() -> int:
    found = re.search(r'graceful_timeout = int\(os\.environ\.get\("GRACEFUL_TIMEOUT", "(\d+)"\)\)', GUNICORN_CONF)
    assert found, "gunicorn.conf.py no longer reads GRACEFUL_TIMEOUT the way this test expects"
    return int(found.group(1))


def test_readme_drain_time_is_gunicorns_graceful_timeout_and_systemds_stop_timeout_is_longer() -> None:
    graceful = graceful_timeout_default()
    stop = int(re.search(r"^TimeoutStopSec=(\d+)$", UNIT, re.M).group(1))
    said = re.search(r"drain within gunicorn's `GRACEFUL_TIMEOUT`\s+of (\d+) s", README)
    assert said, "README no longer says how long the workers have to drain"
    assert int(said.group(1)) == graceful
    assert f"`TimeoutStopSec={stop}`" in README
    assert stop > graceful, "systemd must not SIGKILL a worker that is still within its graceful drain"
    assert "35 s to drain" not in README  # the old sentence took systemd's timeout for the drain
