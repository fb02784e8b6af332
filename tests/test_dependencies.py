"""Every dependency earns its place: requirements.txt pins exactly the packages the declared
dependencies (pyproject.toml) need, transitive ones included, and nothing that nobody uses."""

from __future__ import annotations

import importlib.metadata
import re
import tomllib

from packaging.requirements import Requirement
from support.procs import REPO_ROOT


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def declared() -> list[Requirement]:
    return [Requirement(r) for r in tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["dependencies"]]


def pinned() -> dict[str, str]:
    pins = {}
    for line in (REPO_ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"requirements.txt pins exactly: {line!r}"
            pins[canonical(name)] = version
    return pins


def closure(roots: list[Requirement]) -> set[str]:
    """The declared distributions and everything they require here (markers evaluated, no extras)."""
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        req = todo.pop()
        name = canonical(req.name)
        if name in seen or (req.marker and not req.marker.evaluate({"extra": ""})):
            continue
        seen.add(name)
        todo += [Requirement(r) for r in importlib.metadata.requires(req.name) or []]
    return seen


def test_requirements_pin_the_declared_dependencies_and_what_they_need_and_nothing_else() -> None:
    pins, needed = pinned(), closure(declared())
    assert set(pins) - needed == set(), "pinned, but nothing declared needs it: drop it or declare why"
    assert needed - set(pins) == set(), "needed at run time but not pinned in requirements.txt"


def test_pins_satisfy_the_declared_lower_bounds() -> None:
    pins = pinned()
    for req in declared():
        assert req.specifier.contains(pins[canonical(req.name)]), f"{req} vs pinned {pins[canonical(req.name)]}"
