"""pytest plugin: under CI a run that skipped anything fails.

A skip is how a missing part (no Chromium, no root, a low ulimit) hides: locally
that is a convenience, in CI it would turn "not tested" into green. Skips are
recorded from every report (collection and each test phase; an xfail is not a
skip) and, when CI is truthy, the session's exit status is set to "tests failed"
with a summary that names each one.
"""

from __future__ import annotations

import pytest

from .ci import under_ci

_SKIPS = pytest.StashKey[list[str]]()


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_SKIPS] = []


def _record(config: pytest.Config, report: pytest.CollectReport | pytest.TestReport) -> None:
    if report.skipped and not hasattr(report, "wasxfail"):
        longrepr = report.longrepr
        reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
        config.stash[_SKIPS].append(f"{report.nodeid}: {reason}")


class _Recorder:
    """Holds the config so report hooks (which get no config argument) can record."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        _record(self.config, report)

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        _record(self.config, report)


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    session.config.pluginmanager.register(_Recorder(session.config), "ci-guard-recorder")


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if under_ci() and session.config.stash[_SKIPS] and exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    skips = config.stash[_SKIPS]
    if under_ci() and skips:
        terminalreporter.section("CI forbids skips", sep="=", red=True, bold=True)
        terminalreporter.line(f"{len(skips)} skipped under CI; this run fails. Each one:", red=True)
        for line in skips:
            terminalreporter.line(f"  {line}", red=True)
