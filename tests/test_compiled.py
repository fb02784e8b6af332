"""The compiled per-event modules (chatgenius/compiled.py): what the suite runs is what was built.

A module built before its source last changed would shadow the edited .py, and
the suite would test old code: that fails here always. Under CI every module in
MODULES must be compiled and imported compiled (`make test` builds them), so the
suite tests what the benchmark measures and a deployment runs; a build that
silently fell back to the Python source fails here.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys

import pytest
from support.procs import REPO_ROOT

from chatgenius import compiled

CI = os.environ.get("CI", "").lower() in ("1", "true", "yes", "on")


def test_no_compiled_module_is_older_than_its_source():
    stale = [name for name, state in compiled.status().items() if state == "stale"]
    assert not stale, f"built before their source changed (run `make compiled`): {stale}"


def test_the_status_command_exits_1_on_a_stale_module_and_0_once_it_is_fresh(tmp_path):
    built = [name for name, state in compiled.status().items() if state == "compiled"]
    if not built:
        pytest.skip("no compiled module here (no C compiler, or `make uncompiled`)")
    source = REPO_ROOT / built[0]
    stat = source.stat()
    ext = next(p for p in source.parent.glob(source.stem + ".*") if p.suffix != ".py")
    try:
        os.utime(ext, (stat.st_atime, stat.st_mtime - 10))  # as if the source changed after the build
        run = subprocess.run([sys.executable, "-m", "chatgenius.compiled", "status"], cwd=REPO_ROOT,
                             capture_output=True, text=True, check=False)
        assert run.returncode == 1
        assert f"stale     {built[0]}" in run.stdout
    finally:
        os.utime(ext, (stat.st_atime, stat.st_mtime + 1))
    run = subprocess.run([sys.executable, "-m", "chatgenius.compiled", "status"], cwd=REPO_ROOT,
                         capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stdout


@pytest.mark.skipif(not CI, reason="outside CI the Python source may be what runs (no C compiler)")
def test_under_ci_every_per_event_module_runs_compiled():
    assert compiled.compiler() is not None
    assert set(compiled.status().values()) == {"compiled"}, compiled.status()
    for name in compiled.MODULES:
        importlib.import_module(name.removesuffix(".py").replace("/", "."))
    assert all(compiled.loaded().values()), compiled.loaded()

