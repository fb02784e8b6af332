"""`pip install` gives a working service: the wheel holds the package, its Lua scripts, the bundled
client and the API document; gunicorn serves `chatgenius.wsgi:app` from the installed package, outside
the repository, and streams an event; the console command checks configuration and mints dev tokens."""

from __future__ import annotations

import ast
import importlib.metadata
import os
import re
import sys
import zipfile
from pathlib import Path

from packaging.requirements import Requirement
from support.gunicorn import Gunicorn
from support.http_json import request
from support.procs import REPO_ROOT
from support.service import publish
from support.sse_client import SSEClient

from .conftest import Installed, shipped_files


def wheel_names(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as zf:
        return set(zf.namelist())


def test_wheel_holds_every_module_lua_script_client_file_and_the_api_document(installed: Installed) -> None:
    names = wheel_names(installed.wheel)
    files = shipped_files()
    expected = {n for n in files if n.startswith("chatgenius/") and (n.endswith((".py", ".lua")) or n.endswith("py.typed"))}
    expected |= {"chatgenius/static/" + n.removeprefix("static/") for n in files if n.startswith("static/")}
    expected.add("chatgenius/apidoc/openapi.yaml")
    assert expected - names == set()
    assert not {n for n in names if n.startswith(("tests/", "bench/", "static/", "docs/"))}, "only the package is installed"
    with zipfile.ZipFile(installed.wheel) as zf:
        for name in ("chatgenius/static/chatgenius-realtime.js", "chatgenius/bus/lua/publish.lua"):
            source = REPO_ROOT / ("static/chatgenius-realtime.js" if "static" in name else name)
            assert zf.read(name) == source.read_bytes()


def third_party_imports() -> set[str]:
    """Top-level modules the package imports that are neither its own nor the standard library's."""
    found: set[str] = set()
    for path in (REPO_ROOT / "chatgenius").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return {m for m in found if m not in sys.stdlib_module_names and m not in ("chatgenius", "__future__")}


def test_wheel_declares_every_distribution_the_package_imports_with_a_lower_bound(installed: Installed) -> None:
    with zipfile.ZipFile(installed.wheel) as zf:
        meta = zf.read(next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))).decode()
    requires = [Requirement(line.split(":", 1)[1].strip()) for line in meta.splitlines() if line.startswith("Requires-Dist:")]
    declared = {re.sub(r"[-_.]+", "-", r.name).lower() for r in requires}
    assert all(any(spec.operator == ">=" for spec in r.specifier) for r in requires), requires
    providers = importlib.metadata.packages_distributions()
    missing = {m: providers.get(m) for m in third_party_imports()
               if not {re.sub(r"[-_.]+", "-", d).lower() for d in providers.get(m, [])} & declared}
    assert missing == {}, f"imported but not declared in pyproject.toml: {missing}"


def test_gunicorn_streams_an_event_from_the_installed_package_outside_the_repository(installed: Installed, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": "", "AUTH_MODE": "dev"}
    where = installed.run(str(installed.python), "-c", "import chatgenius, sys; print(chatgenius.__file__)", env=env, cwd=tmp_path)
    assert where.stdout.strip().startswith(str(installed.site_packages)), where
    cli = str(installed.venv / "bin" / "chatgenius-realtime")
    checked = installed.run(cli, "check-config", env=env, cwd=tmp_path)
    assert checked.returncode == 0 and checked.stdout.startswith("config ok: "), checked

    with Gunicorn(app_module="chatgenius.wsgi:app", cwd=tmp_path, config=None, args=["-k", "chatgenius.gunicorn_worker.PublishWorker"],
                  binary=str(installed.venv / "bin" / "gunicorn"), env={"PYTHONPATH": "", "AUTH_MODE": "dev"}) as server:
        base = server.base_url
        minted = installed.run(cli, "dev-token", "--url", base, "--sub", "alice", "--channel", "channel:*",
                               "--permission", "publish:events", env=env, cwd=tmp_path)
        assert minted.returncode == 0, minted
        token = minted.stdout.strip()
        client = SSEClient(f"{base}/stream?channels=channel:general", {"Authorization": f"Bearer {token}"})
        try:
            assert client.status == 200, client.json_body()
            assert client.next(5).event == "system.connected"
            ident = publish(base, token, "channel:general", {"text": "from the wheel"})
            got = client.read_until(lambda f: f.event == "message.created", timeout=10)
            assert got.id == ident and got.json()["data"] == {"text": "from the wheel"}
        finally:
            client.close()
        js = request("GET", f"{base}/static/chatgenius-realtime.js")
        assert js.status == 200 and js.body == (REPO_ROOT / "static/chatgenius-realtime.js").read_bytes()
        assert b"<title>ChatGenius" in request("GET", f"{base}/").body
        assert request("GET", f"{base}/openapi.json").json()["paths"]["/stream"]["get"]
