"""Prometheus can scrape for good: METRICS_TOKEN is a bearer that does not expire and opens /metrics only,
and deploy/prometheus.yml, with its paths pointed at this test's files, scrapes a real gunicorn (real Prometheus)."""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from support.gunicorn import Gunicorn
from support.http_json import request
from support.procs import REPO_ROOT, free_port, require_binary, spawn, tail, terminate_tree, wait_until
from support.service import bearer, dev_token, service_env

from chatgenius import config

TOKEN = "m3tr1cs-" + "x" * 40
SHIPPED = REPO_ROOT / "deploy/prometheus.yml"


@pytest.fixture(scope="module")
def server() -> Iterator[Gunicorn]:
    with Gunicorn(env=service_env(None, METRICS_TOKEN=TOKEN)) as g:
        yield g


def status(server: Gunicorn, path: str, headers: dict[str, str]) -> int:
    return request("GET", server.base_url + path, headers=headers).status


def test_metrics_token_opens_metrics_and_nothing_else(server: Gunicorn) -> None:
    answer = request("GET", server.base_url + "/metrics", headers=bearer(TOKEN))
    assert answer.status == 200 and b"chatgenius_connections_active" in answer.body
    assert status(server, "/metrics", bearer(TOKEN[:-1] + "y")) == 401
    assert status(server, "/metrics", {"Authorization": TOKEN}) == 401
    assert status(server, "/metrics", {}) == 401
    for path in ("/admin/stats", "/admin/connections", "/admin/flags"):
        assert status(server, path, bearer(TOKEN)) == 401, path
    # A user token with admin:sse still works; without the permission it does not.
    assert status(server, "/metrics", bearer(dev_token(server.base_url, "ops", [], ["admin:sse"]))) == 200
    assert status(server, "/metrics", bearer(dev_token(server.base_url, "alice", ["channel:*"]))) == 403
    assert TOKEN not in server.log_path.read_text()


def test_metrics_token_is_checked_at_start_and_kept_out_of_reprs() -> None:
    with pytest.raises(config.ConfigError, match="METRICS_TOKEN: expected at least 32 characters") as info:
        config.load({"AUTH_MODE": "dev", "METRICS_TOKEN": "hunter2"})
    assert "hunter2" not in str(info.value)
    assert TOKEN not in repr(config.load({"AUTH_MODE": "dev", "METRICS_TOKEN": TOKEN}))


def local_copy(tmp_path: Path, target: str) -> Path:
    """deploy/prometheus.yml with its host paths and targets pointed at this test's files and gunicorn."""
    conf = yaml.safe_load(SHIPPED.read_text())
    token_file = tmp_path / "metrics.token"
    token_file.write_text(TOKEN + "\n")
    conf["global"]["scrape_interval"] = "1s"
    conf["rule_files"] = [str(REPO_ROOT / "deploy/prometheus-rules.yml")]
    (job,) = conf["scrape_configs"]
    assert job["authorization"]["credentials_file"].startswith("/etc/prometheus/")
    job["authorization"]["credentials_file"] = str(token_file)
    job["static_configs"] = [{"targets": [target]}]
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(conf))
    return path


def test_shipped_scrape_config_passes_promtool(tmp_path: Path) -> None:
    promtool = require_binary("promtool", shutil.which("promtool"))
    done = subprocess.run([promtool, "check", "config", str(local_copy(tmp_path, "127.0.0.1:8000"))],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0 and "SUCCESS" in done.stdout, done.stdout + done.stderr


def test_prometheus_scrapes_gunicorn_with_the_shipped_config(server: Gunicorn, tmp_path: Path) -> None:
    prometheus = require_binary("prometheus", shutil.which("prometheus"))
    port = free_port()
    argv = [prometheus, f"--config.file={local_copy(tmp_path, server.base_url.removeprefix('http://'))}",
            f"--storage.tsdb.path={tmp_path / 'data'}", f"--web.listen-address=127.0.0.1:{port}"]
    log = tmp_path / "prometheus.log"
    proc = spawn(argv, log, tmp_path)
    try:
        def target() -> dict | None:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/targets", timeout=2) as resp:
                active = json.load(resp)["data"]["activeTargets"]
            return active[0] if active and active[0]["health"] != "unknown" else None

        scraped = wait_until(target, 30, 0.2, "Prometheus scraped the target", ignore=(OSError, ValueError))
        assert scraped["health"] == "up" and scraped["lastError"] == "", scraped
        query = f"http://127.0.0.1:{port}/api/v1/query?query=chatgenius_connections_capacity"
        with urllib.request.urlopen(query, timeout=5) as resp:
            assert json.load(resp)["data"]["result"], "a chatgenius_ series was stored"
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n--- prometheus log ---\n{tail(log)}") from None
    finally:
        terminate_tree(proc)
