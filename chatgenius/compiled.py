"""The per-event modules, compiled to C extensions by mypyc where a C compiler is at hand.

Why: at chat-shaped load most of a worker's user-space CPU is the interpreter
running a few dozen small functions per event (the publish request's head,
token cache, validation, envelope and script call; the feed's read; the frame;
the counters), each a few microseconds. mypyc compiles these typed modules,
unchanged, into C extensions: the same source, about a tenth less server CPU
per chat publish (docs/PERFORMANCE.md). The Python source stays the reference: where
no module is built (no C compiler, or `make uncompiled`), Python imports the
.py files and the service behaves the same.

    python -m chatgenius.compiled build    # compile MODULES (needs mypy and a C compiler)
    python -m chatgenius.compiled clean    # remove what build made
    python -m chatgenius.compiled status   # which modules are compiled; exit 1 if any is stale
    python -m chatgenius.compiled compiler # exit 0 when a C compiler is at hand

A built module shadows its .py (Python imports an extension module first), so a
module edited after its build is *stale*: `status` says so and the suite fails
under CI (tests/test_compiled.py); `make test` and `make run` rebuild first.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The modules an event passes through, in the order it meets them. A module here must type-check
# under mypy (mypyc checks every annotation at run time) and no class outside this list may
# subclass one of its classes (a compiled class is final to interpreted code). fanout.py stays
# interpreted: its lane resumes a C `map` after a failed send from how far CPython's list.extend
# got, which compiled code does not keep.
MODULES = (
    "chatgenius/web/publish_head.py",
    "chatgenius/web/publish_fast.py",
    "chatgenius/events.py",
    "chatgenius/publishing.py",
    "chatgenius/publisher.py",
    "chatgenius/cursor.py",
    "chatgenius/readable.py",
    "chatgenius/bus/redis_replies.py",
    "chatgenius/bus/redis_script.py",
    "chatgenius/bus/redis_publish.py",
    "chatgenius/bus/cluster_shards.py",
    "chatgenius/bus/redis_feed.py",
    "chatgenius/sse.py",
    "chatgenius/subscriber.py",
    "chatgenius/wire.py",
    "chatgenius/telemetry.py",
)


def _extension(source: Path) -> Path | None:
    """The extension module built for `source`, if any."""
    suffix = sysconfig.get_config_var("EXT_SUFFIX") or ".so"
    built = source.with_name(source.stem + suffix)
    return built if built.exists() else None


def status() -> dict[str, str]:
    """Each module's state: "compiled", "stale" (built before its source last changed) or "source"."""
    out = {}
    for name in MODULES:
        source = ROOT / name
        built = _extension(source)
        if built is None:
            out[name] = "source"
        else:
            out[name] = "stale" if built.stat().st_mtime < source.stat().st_mtime else "compiled"
    return out


def loaded() -> dict[str, bool]:
    """Whether each module, as imported in this process, is the compiled one."""
    out = {}
    for name in MODULES:
        dotted = name.removesuffix(".py").replace("/", ".")
        spec = importlib.util.find_spec(dotted)
        out[name] = spec is not None and spec.origin is not None and not spec.origin.endswith(".py")
    return out


def compiler() -> str | None:
    """The C compiler Python's build uses, if it is installed."""
    cc = (sysconfig.get_config_var("CC") or "cc").split()[0]
    return shutil.which(cc)


def clean() -> None:
    """Remove the extension modules built from the package's sources (of MODULES, or of a module
    taken out of it since: it would still shadow its source), mypyc's shared library and build directory."""
    suffix = sysconfig.get_config_var("EXT_SUFFIX") or ".so"
    for built in (ROOT / "chatgenius").rglob("*" + suffix):
        if built.with_name(built.name.removesuffix(suffix) + ".py").exists():
            built.unlink()
    for lib in ROOT.glob("*__mypyc*"):
        lib.unlink()
    shutil.rmtree(ROOT / "build", ignore_errors=True)


def build() -> int:
    """Compile MODULES in place with mypyc; 0 when built."""
    clean()
    env = {**os.environ, "MYPYC_OPT_LEVEL": os.environ.get("MYPYC_OPT_LEVEL", "3")}
    args = [sys.executable, "-m", "mypyc", "--ignore-missing-imports", "--follow-imports=silent", *MODULES]
    done = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    shutil.rmtree(ROOT / "build", ignore_errors=True)
    if done.returncode != 0:
        clean()  # never half a build: every module compiled, or none
        print(done.stdout[-4000:], done.stderr[-4000:], sep="\n", file=sys.stderr)
    return done.returncode


def main(argv: list[str]) -> int:
    """The command line (see the module doc)."""
    command = argv[0] if argv else "status"
    if command == "build":
        if compiler() is None:
            print("no C compiler: the service runs from the Python source (slower per event)", file=sys.stderr)
            return 0
        return build()
    if command == "compiler":
        return 0 if compiler() is not None else 1
    if command == "clean":
        clean()
        return 0
    if command == "status":
        states = status()
        for name, state in states.items():
            print(f"{state:9} {name}")
        return 1 if "stale" in states.values() else 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
