"""The skip guard itself: any truthy CI counts, and under CI a run with a skip fails.

Each case runs a small pytest in a tmp dir with this suite's plugin loaded, so
what is checked is the exit status CI would see, not a hook called by hand.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from support.ci import under_ci
from support.procs import REPO_ROOT

SKIPPING = """
import pytest

def test_runs():
    assert True

def test_skips():
    pytest.skip("no such part here")
"""

PASSING = """
import pytest

def test_runs():
    assert True

@pytest.mark.xfail(strict=True, reason="an expected failure is not a skip")
def test_xfails():
    assert False
"""

MODULE_SKIP = """
import pytest
pytest.skip("whole module needs a missing part", allow_module_level=True)
"""


def run_pytest(tmp_path: Path, source: str, ci: str | None) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_case.py").write_text(source)
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "PYTEST_ADDOPTS")}
    if ci is not None:
        env["CI"] = ci
    env["PYTHONPATH"] = str(REPO_ROOT / "tests")
    argv = [sys.executable, "-m", "pytest", "-p", "support.ci_guard", "-q", "-rs", "-p", "no:cacheprovider",
            "-c", os.devnull, str(tmp_path)]
    return subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.parametrize("value", ["1", "true", "TRUE", "yes", "On", " true "])
def test_any_truthy_ci_counts(value: str) -> None:
    assert under_ci({"CI": value})


@pytest.mark.parametrize("value", [None, "", "0", "false", "no", "off", "maybe"])
def test_unset_or_falsy_ci_does_not(value: str | None) -> None:
    assert not under_ci({} if value is None else {"CI": value})


@pytest.mark.parametrize("ci", ["1", "true", "Yes"])
def test_a_run_that_skipped_fails_under_ci(tmp_path: Path, ci: str) -> None:
    done = run_pytest(tmp_path, SKIPPING, ci)
    assert done.returncode == pytest.ExitCode.TESTS_FAILED, done.stdout + done.stderr
    assert "CI forbids skips" in done.stdout, done.stdout
    assert "test_case.py::test_skips" in done.stdout and "no such part here" in done.stdout, done.stdout


def test_a_module_level_skip_fails_under_ci(tmp_path: Path) -> None:
    done = run_pytest(tmp_path, MODULE_SKIP, "1")
    assert done.returncode == pytest.ExitCode.TESTS_FAILED, done.stdout + done.stderr
    assert "whole module needs a missing part" in done.stdout, done.stdout


@pytest.mark.parametrize("ci", [None, "false", "0"])
def test_the_same_run_passes_outside_ci(tmp_path: Path, ci: str | None) -> None:
    done = run_pytest(tmp_path, SKIPPING, ci)
    assert done.returncode == pytest.ExitCode.OK, done.stdout + done.stderr
    assert "1 passed, 1 skipped" in done.stdout, done.stdout
    assert "CI forbids skips" not in done.stdout


def test_a_run_without_skips_passes_under_ci_and_an_xfail_is_not_a_skip(tmp_path: Path) -> None:
    done = run_pytest(tmp_path, PASSING, "true")
    assert done.returncode == pytest.ExitCode.OK, done.stdout + done.stderr
    assert "1 passed, 1 xfailed" in done.stdout, done.stdout
