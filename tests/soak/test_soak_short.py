"""The soak in its short form (bench/soak.py): churn, publishing and resumes lose and duplicate nothing,
on one Redis and on Redis Cluster.

The long run that judges resource flatness (`make soak`) is documented in docs/RELIABILITY.md.
"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest


@pytest.mark.slow
@pytest.mark.parametrize("store", [[], ["--cluster"]], ids=["redis", "cluster"])
def test_short_soak_loses_and_duplicates_nothing(repo_root, tmp_path, store):
    out = tmp_path / "soak"
    proc = subprocess.run(
        [sys.executable, "bench/soak.py", "--minutes", "1", "--sample", "15", "--clients", "60", "--churn", "0.05",
         "--out", str(out), *store],
        cwd=repo_root, capture_output=True, text=True, timeout=240,
    )
    report = out.with_suffix(".md").read_text()
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "lost 0, duplicated 0" in report
    # The reconnect churn ran both ways, about 3 of the 60 clients a second for a minute.
    reset, closed = map(int, re.search(r"\((\d+) reset, (\d+) closed\)", report).groups())
    assert reset >= 30 and closed >= 30, report.splitlines()[0]
    assert "Result: PASS" in report
    assert out.with_suffix(".png").stat().st_size > 5000  # the plot was drawn
