"""Numbers the docs state about the shipped files, read from those files (a doc that drifts fails here)."""

from __future__ import annotations

import ast
import fnmatch
import re

from support.procs import REPO_ROOT

README = (REPO_ROOT / "README.md").read_text()
UNIT = (REPO_ROOT / "deploy/chatgenius-realtime.service").read_text()
GUNICORN_CONF = (REPO_ROOT / "gunicorn.conf.py").read_text()


def graceful_timeout_default() -> int:
    found = re.search(r'graceful_timeout = int\(os\.environ\.get\("GRACEFUL_TIMEOUT", "(\d+)"\)\)', GUNICORN_CONF)
    assert found, "gunicorn.conf.py no longer reads GRACEFUL_TIMEOUT the way this test expects"
    return int(found.group(1))


def test_readme_drain_time_is_gunicorns_graceful_timeout_and_systemds_stop_timeout_is_longer() -> None:
    graceful = graceful_timeout_default()
    stop = int(re.search(r"^TimeoutStopSec=(\d+)$", UNIT, re.M).group(1))
    said = re.search(r"drain within gunicorn's `GRACEFUL_TIMEOUT`\s+of (\d+) s", README)
    assert said, "README no longer says how long the workers have to drain"
    assert int(said.group(1)) == graceful
    assert f"`TimeoutStopSec={stop}`" in README
    assert stop > graceful, "systemd must not SIGKILL a worker that is still within its graceful drain"
    assert "35 s to drain" not in README  # the old sentence took systemd's timeout for the drain


# docs/ARCHITECTURE.md names modules, classes and functions: each must exist in chatgenius/.
ARCHITECTURE = (REPO_ROOT / "docs/ARCHITECTURE.md").read_text()
PACKAGE = REPO_ROOT / "chatgenius"
NOT_OURS = {"EventSource"}  # the browser's API, named beside ours


def defined_names() -> tuple[dict[str, set[str]], set[str]]:
    """Members by module (last dotted part, and `chatgenius`) and by class; every top-level name."""
    members: dict[str, set[str]] = {}
    top: set[str] = set()
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text())
        module = "chatgenius" if path.name == "__init__.py" and path.parent == PACKAGE else path.stem
        names = members.setdefault(module, set())
        for node in tree.body:
            names.update(n for n in _bound(node))
            if isinstance(node, ast.ClassDef):
                cls = members.setdefault(node.name, set())
                for item in ast.walk(node):
                    cls.update(_bound(item))
                    if isinstance(item, ast.Attribute) and isinstance(item.ctx, ast.Store):
                        cls.add(item.attr)  # self.x = ...
        top |= names
    return members, top


def _bound(node: ast.AST) -> list[str]:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return [node.name]
    if isinstance(node, ast.Assign):
        return [t.id for t in node.targets if isinstance(t, ast.Name)]
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
        return [node.target.id]
    if isinstance(node, ast.ImportFrom):
        return [a.asname or a.name for a in node.names]
    return []


def test_architecture_names_only_files_that_exist() -> None:
    files = {p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*") if p.is_file()}
    named = set(re.findall(r"(?<![\w./-])((?:[\w*]+/)*[\w*]+\.(?:py|lua))\b", ARCHITECTURE))
    missing = [
        name for name in sorted(named)
        if not (REPO_ROOT / name).exists() and not any(fnmatch.fnmatch(f, f"*{name}") for f in files)
    ]
    assert not missing, f"docs/ARCHITECTURE.md names files that do not exist: {missing}"


def test_architecture_names_only_code_that_exists() -> None:
    members, top = defined_names()
    missing = []
    for dotted in set(re.findall(r"`([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+)(?:\([^`]*\))?`", ARCHITECTURE)):
        parts = dotted.split(".")
        if parts[0] == "system":  # an event type (system.reset), not code
            continue
        if any(b not in members.get(a, set()) for a, b in zip(parts, parts[1:])):
            missing.append(dotted)
    classes = set(re.findall(r"\b[A-Z][a-z0-9]+(?:[A-Z][a-z0-9]+)+\b", ARCHITECTURE)) - NOT_OURS
    missing += sorted(c for c in classes if c not in top)
    assert not missing, f"docs/ARCHITECTURE.md names code that does not exist: {sorted(missing)}"
