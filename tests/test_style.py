"""The house style that a reviewer would otherwise check by hand: every public definition under
chatgenius/ says what it is for, and no module grows past 300 lines (one job per module)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from support.procs import REPO_ROOT

PACKAGE = REPO_ROOT / "chatgenius"
MAX_LINES = 300
Definition = ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def public_definitions(body: list[ast.stmt], prefix: str = "") -> Iterator[tuple[str, Definition]]:
    """Classes, functions and methods without a leading underscore, nested classes' members included."""
    for node in body:
        if isinstance(node, Definition) and not node.name.startswith("_"):
            yield prefix + node.name, node
            if isinstance(node, ast.ClassDef):
                yield from public_definitions(node.body, prefix + node.name + ".")


def test_every_public_definition_has_a_docstring() -> None:
    missing = [
        f"{path.relative_to(REPO_ROOT)}:{node.lineno} {name}"
        for path in modules()
        for name, node in public_definitions(ast.parse(path.read_text()).body)
        if ast.get_docstring(node) is None
    ]
    assert not missing, "public definitions without a docstring (say what it is for, in one line):\n" + "\n".join(missing)


def test_every_module_is_at_most_300_lines() -> None:
    long = {str(path.relative_to(REPO_ROOT)): n for path in modules() if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines (split along a seam): {long}"
