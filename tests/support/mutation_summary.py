"""Summarise `mutmut results --all true` into the Markdown table docs/TESTING.md records.

Usage: mutation_summary.py RESULTS_TXT [OUT_MD]. The score is killed / (killed +
survived): mutants no selected test reaches ("no tests") are listed apart, since
they say "no fast unit test covers this" rather than "a test missed this".
"""

from __future__ import annotations

import re
import sys
from collections import Counter, defaultdict
from pathlib import Path

LINE = re.compile(r"^\s*(?P<name>chatgenius[\w.ǁ]+__mutmut_\d+):\s*(?P<status>.+?)\s*$")
MODULE = re.compile(r"^(?P<module>chatgenius(?:\.[a-z_]+)*?)\.x[_ǁ]")


def summarise(text: str) -> str:
    by_module: dict[str, Counter[str]] = defaultdict(Counter)
    survivors: list[str] = []
    for line in text.splitlines():
        found = LINE.match(line)
        if not found:
            continue
        name, status = found["name"], found["status"]
        module = MODULE.match(name)
        by_module[module["module"] if module else "?"][status] += 1
        if status == "survived":
            survivors.append(name)
    total: Counter[str] = Counter()
    rows = ["| module | mutants | killed | survived | no tests | timeout | other | score |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for module in sorted(by_module):
        c = by_module[module]
        total.update(c)
        rows.append(row(module, c))
    rows.append(row("**all**", total))
    return "\n".join([*rows, "", f"Survivors ({len(survivors)}):", "", *(f"- `{s}`" for s in survivors), ""])


def row(label: str, c: Counter[str]) -> str:
    killed, survived = c["killed"], c["survived"]
    other = sum(c.values()) - killed - survived - c["no tests"] - c["timeout"]
    score = f"{killed / (killed + survived):.0%}" if killed + survived else "-"
    return f"| {label} | {sum(c.values())} | {killed} | {survived} | {c['no tests']} | {c['timeout']} | {other} | {score} |"


if __name__ == "__main__":
    summary = summarise(Path(sys.argv[1]).read_text())
    print(summary)
    if len(sys.argv) > 2:
        Path(sys.argv[2]).parent.mkdir(parents=True, exist_ok=True)
        Path(sys.argv[2]).write_text(summary)
