"""The compiled per-event modules (chatgenius/compiled.py): what runs is what was built from the sources as they are.

A built module shadows its .py. A build made from other sources of the package
(an edit anywhere in it, a checkout, a copy that kept file times), for another
Python or with other build options is stale, and a build of a module no longer
listed (or removed) is an orphan: either would run old code, so `status`
reports both and exits 1, and the suite fails on one here. Under CI every
module in MODULES must be compiled and imported compiled (`make test` builds
them), so the suite tests what the benchmark measures and a deployment runs.
"""

from __future__ import annotations

import importlib
import json
import os

import pytest
from support.ci import under_ci

from chatgenius import compiled


def test_no_module_here_runs_a_build_of_other_sources():
    wrong = {name: state for name, state in compiled.status().items() if state in ("stale", "orphan")}
    assert not wrong, f"run `make compiled` (or `make uncompiled`): {wrong}"


@pytest.fixture
def tree(tmp_path, monkeypatch):
    """A package tree of MODULES and one module not listed, in tmp_path, as compiled.py sees it."""
    for name in (*compiled.MODULES, "chatgenius/other.py"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(f"# {name}\n")
    (tmp_path / "requirements-build.txt").write_text("mypy==1\n")
    monkeypatch.setattr(compiled, "ROOT", tmp_path)
    monkeypatch.setattr(compiled, "MANIFEST", tmp_path / "build-compiled.json")
    monkeypatch.delenv("MYPYC_OPT_LEVEL", raising=False)
    return tmp_path


def built(root, name):
    ext = root / name.removesuffix(".py")
    ext = ext.with_name(ext.name + compiled.SUFFIX)
    ext.write_bytes(b"")
    return ext


def built_now():
    compiled.MANIFEST.write_text(json.dumps({"key": compiled.build_key()}))


def test_status_tells_a_build_of_these_sources_from_orphans_and_the_source(tree, capsys):
    first, second = compiled.MODULES[:2]
    built(tree, first)
    built(tree, second)
    built_now()
    orphans = [built(tree, "chatgenius/other.py"), built(tree, "chatgenius/gone.py")]  # gone.py: no source left
    states = compiled.status()
    assert states[first] == states[second] == "compiled"
    assert states["chatgenius/other" + compiled.SUFFIX] == states["chatgenius/gone" + compiled.SUFFIX] == "orphan"
    assert {states[name] for name in compiled.MODULES[2:]} == {"source"}
    assert compiled.main(["status"]) == 1
    assert f"orphan    chatgenius/gone{compiled.SUFFIX}" in capsys.readouterr().out
    for ext in orphans:
        ext.unlink()
    assert compiled.main(["status"]) == 0  # compiled and source only


@pytest.mark.parametrize("change", ["a listed module", "a module not listed", "the build requirements", "the optimisation level"])
def test_a_build_is_stale_after_any_change_to_what_it_was_built_from_whatever_the_file_times(tree, monkeypatch, change):
    name = compiled.MODULES[0]
    ext = built(tree, name)
    built_now()
    assert compiled.status()[name] == "compiled"
    edited = {"a listed module": tree / name, "a module not listed": tree / "chatgenius/other.py",
              "the build requirements": tree / "requirements-build.txt"}.get(change)
    if edited is None:
        monkeypatch.setenv("MYPYC_OPT_LEVEL", "0")
    else:
        edited.write_text(edited.read_text() + "# edited\n")
        os.utime(edited, (0, 0))  # older than the build, as a copy keeping times could make it
        assert ext.stat().st_mtime > edited.stat().st_mtime
    assert compiled.status()[name] == "stale"
    assert compiled.main(["status"]) == 1


def test_clean_removes_every_build_the_shared_library_and_the_manifest_and_no_source(tree):
    exts = [built(tree, name) for name in (*compiled.MODULES, "chatgenius/other.py", "chatgenius/gone.py")]
    lib = tree / ("abc123__mypyc" + compiled.SUFFIX)
    lib.write_bytes(b"")
    built_now()
    compiled.clean()
    assert not any(p.exists() for p in (*exts, lib, compiled.MANIFEST))
    assert all((tree / name).exists() for name in (*compiled.MODULES, "chatgenius/other.py"))
    assert set(compiled.status().values()) == {"source"}


def test_without_a_working_compiler_ensure_leaves_the_source_to_run(tree, monkeypatch):
    exts = [built(tree, name) for name in compiled.MODULES]
    built_now()
    (tree / compiled.MODULES[0]).write_text("# edited since\n")
    monkeypatch.setattr(compiled, "compiler", lambda: None)
    assert compiled.main(["ensure"]) == 0
    assert not any(p.exists() for p in exts) and set(compiled.status().values()) == {"source"}


@pytest.mark.skipif(not under_ci(), reason="outside CI the Python source may be what runs (no C compiler)")
def test_under_ci_every_per_event_module_runs_compiled():
    assert compiled.compiler() is not None
    assert set(compiled.status().values()) == {"compiled"}, compiled.status()
    for name in compiled.MODULES:
        importlib.import_module(name.removesuffix(".py").replace("/", "."))
    assert all(compiled.loaded().values()), compiled.loaded()
