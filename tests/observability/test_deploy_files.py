"""The shipped alert rules and Grafana dashboard are valid (promtool; the dashboard's JSON shape).

That every metric they name is exported is checked against a live /metrics in test_gunicorn.py.
"""

from __future__ import annotations

import json
import shutil
import subprocess

from support.procs import REPO_ROOT, require_binary

RULES = REPO_ROOT / "deploy/prometheus-rules.yml"
RULE_TESTS = REPO_ROOT / "tests/observability/prometheus-rules.test.yml"
DASHBOARD = REPO_ROOT / "deploy/grafana-dashboard.json"


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    binary = require_binary("promtool", shutil.which("promtool"))
    return subprocess.run([binary, *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, check=False)


def test_alert_rules_pass_promtool_check() -> None:
    done = promtool("check", "rules", str(RULES))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_each_alert_fires_on_its_failure_and_not_on_health() -> None:
    done = promtool("test", "rules", str(RULE_TESTS))
    assert done.returncode == 0, done.stdout + done.stderr
    alerts = {line.split(":", 1)[1].strip() for line in RULES.read_text().splitlines() if line.strip().startswith("- alert:")}
    tested = RULE_TESTS.read_text()
    assert alerts and all(f"alertname: {a}" in tested for a in alerts), "every alert has a promtool test"


def test_dashboard_is_a_well_formed_grafana_dashboard() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["title"] and dashboard["schemaVersion"] >= 30
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    titles = " ".join(p["title"].lower() for p in panels)
    for topic in ("connections", "users", "events per second", "latency", "reconnect", "error", "memory", "reader lag"):
        assert topic in titles, topic
    for p in panels:
        grid = p["gridPos"]
        assert grid["w"] > 0 and grid["h"] > 0 and grid["x"] + grid["w"] <= 24, p["title"]
        assert p["datasource"]["uid"] == "${datasource}", p["title"]
        refs = [t["refId"] for t in p["targets"]]
        assert refs and len(set(refs)) == len(refs), p["title"]
        for t in p["targets"]:
            assert t["expr"].count("(") == t["expr"].count(")") and t["expr"].count("{") == t["expr"].count("}"), t["expr"]
            assert 'instance=~"$instance"' in t["expr"], t["expr"]
