"""The compiled per-event modules (chatgenius/compiled.py): what runs is what was built from the source as it is.

A built module shadows its .py. One whose source changed since its build (an
edit, a checkout, a copy that kept file times) is stale, and a build of a
module no longer listed is an orphan: either would run old code, so `status`
reports both and exits 1, and the suite fails on one here. Under CI every
module in MODULES must be compiled and imported compiled (`make test` builds
them), so the suite tests what the benchmark measures and a deployment runs.
"""

from __future__ import annotations

import importlib
import json
import os

import pytest

from chatgenius import compiled

CI = os.environ.get("CI", "").lower() in ("1", "true", "yes", "on")


def test_no_module_here_runs_a_build_of_another_source():
    wrong = {name: state for name, state in compiled.status().items() if state in ("stale", "orphan")}
    assert not wrong, f"run `make compiled` (or `make uncompiled`): {wrong}"


@pytest.fixture
def tree(tmp_path, monkeypatch):
    """A package tree of MODULES (and one module not listed) in tmp_path, as compiled.py sees it."""
    for name in (*compiled.MODULES, "chatgenius/other.py"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(f"# {name}\n")
    monkeypatch.setattr(compiled, "ROOT", tmp_path)
    monkeypatch.setattr(compiled, "MANIFEST", tmp_path / "build-compiled.json")
    return tmp_path


def built(root, name):
    ext = (root / name).with_name((root / name).stem + compiled.SUFFIX)
    ext.write_bytes(b"")
    return ext


def test_status_tells_a_build_of_this_source_from_a_stale_one_an_orphan_and_none(tree, capsys):
    first, second = compiled.MODULES[:2]
    for name in (first, second, "chatgenius/other.py"):
        built(tree, name)
    digest = compiled._digest(tree / first)
    compiled.MANIFEST.write_text(json.dumps({first: digest, second: digest}))  # `second` was built from other bytes
    states = compiled.status()
    assert states[first] == "compiled" and states[second] == "stale" and states["chatgenius/other.py"] == "orphan"
    assert {states[name] for name in compiled.MODULES[2:]} == {"source"}
    assert compiled.main(["status"]) == 1
    assert f"stale     {second}" in capsys.readouterr().out
    (tree / second).with_name((tree / second).stem + compiled.SUFFIX).unlink()
    (tree / "chatgenius" / ("other" + compiled.SUFFIX)).unlink()
    assert compiled.main(["status"]) == 0  # compiled and source only


def test_a_source_edited_after_its_build_is_stale_whatever_the_file_times(tree):
    name = compiled.MODULES[0]
    ext = built(tree, name)
    compiled.MANIFEST.write_text(json.dumps({name: compiled._digest(tree / name)}))
    assert compiled.status()[name] == "compiled"
    (tree / name).write_text("# edited\n")
    os.utime(tree / name, (0, 0))  # older than the build, as a copy keeping times could make it
    assert ext.stat().st_mtime > (tree / name).stat().st_mtime
    assert compiled.status()[name] == "stale"


def test_clean_removes_every_build_the_shared_library_and_the_manifest_and_no_source(tree):
    exts = [built(tree, name) for name in (*compiled.MODULES, "chatgenius/other.py")]
    lib = tree / ("abc123__mypyc" + compiled.SUFFIX)
    lib.write_bytes(b"")
    compiled.MANIFEST.write_text("{}")
    compiled.clean()
    assert not any(p.exists() for p in (*exts, lib, compiled.MANIFEST))
    assert all((tree / name).exists() for name in (*compiled.MODULES, "chatgenius/other.py"))
    assert set(compiled.status().values()) == {"source"}


@pytest.mark.skipif(not CI, reason="outside CI the Python source may be what runs (no C compiler)")
def test_under_ci_every_per_event_module_runs_compiled():
    assert compiled.compiler() is not None
    assert set(compiled.status().values()) == {"compiled"}, compiled.status()
    for name in compiled.MODULES:
        importlib.import_module(name.removesuffix(".py").replace("/", "."))
    assert all(compiled.loaded().values()), compiled.loaded()
