"""The per-event modules, compiled to C extensions by mypyc where a C compiler is at hand.

Why: at chat-shaped load most of a worker's user-space CPU is the interpreter
running a few dozen small functions per event (the publish request's head,
token cache, validation, envelope and script call; the feed's read; the frame;
the counters), each a few microseconds. mypyc compiles these typed modules,
unchanged, into C extensions: the same source, about a tenth less server CPU
per chat publish (docs/PERFORMANCE.md). The Python source stays the reference: where
no module is built (no C compiler, or `make uncompiled`), Python imports the
.py files: the same code, at more CPU per event.

    python -m chatgenius.compiled build    # compile MODULES (needs mypy and a C compiler)
    python -m chatgenius.compiled ensure   # build, unless every module is built from the sources as they are
    python -m chatgenius.compiled clean    # remove what build made
    python -m chatgenius.compiled status   # each module's state; exit 1 if any is stale or orphaned
    python -m chatgenius.compiled compiler # exit 0 when a C compiler and the headers are at hand

A built module shadows its .py (Python imports an extension module first), so a
build made from other sources of the package (an edit anywhere in it, a checkout)
is *stale*, and a build of a module no longer in MODULES an *orphan*: `status` says so, gunicorn's
start-up warns and the suite fails (tests/test_compiled.py); `make run` and `make
test` rebuild first (`ensure`). This file runs without the package's dependencies
(`python3 chatgenius/compiled.py clean` works without the venv).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
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
# got, which compiled code does not keep. publishing.py and publisher.py stay interpreted: they are
# the documented Python API, whose callers get a PublishError for a value of the wrong type (compiled,
# a declared `str` would be a TypeError on entry).
MODULES = (
    "chatgenius/web/publish_head.py",
    "chatgenius/web/publish_fast.py",
    "chatgenius/events.py",
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


SUFFIX = sysconfig.get_config_var("EXT_SUFFIX") or ".so"
# The build key of what is built: written by build(), compared by status(). It covers every source
# of the package (a compiled module relies on the types of what it imports, compiled or not), the
# build's requirements and options and the Python it was built for, so an edit anywhere, a checkout
# or a copy that keeps file times (rsync -a, cp -p, tar) cannot make an old build look fresh.
MANIFEST = ROOT / "build-compiled.json"


def build_key() -> str:
    """sha256 over the package's sources, requirements-build.txt, MYPYC_OPT_LEVEL and the Python version."""
    h = hashlib.sha256(f"{sys.version}\0{_opt_level()}\0".encode())
    extra = ROOT / "requirements-build.txt"
    for path in [*sorted((ROOT / "chatgenius").rglob("*.py")), extra]:
        h.update(path.relative_to(ROOT).as_posix().encode() + b"\0")
        h.update(path.read_bytes() if path.exists() else b"")
        h.update(b"\0")
    return h.hexdigest()


def _opt_level() -> str:
    return os.environ.get("MYPYC_OPT_LEVEL", "3")


def _built(source: Path) -> Path | None:
    """The extension module built for `source`, if any."""
    built = source.with_name(source.stem + SUFFIX)
    return built if built.exists() else None


def _extensions() -> list[Path]:
    """Every extension module in the package (it ships none of its own: each is a build of ours)."""
    return sorted((ROOT / "chatgenius").rglob("*.so"))


def status() -> dict[str, str]:
    """Each module's state: "compiled", "stale" (built from other sources: an edit anywhere in the
    package, another Python, other build options) or "source"; and any other extension module in
    the package: "orphan" (a build of a module no longer listed, or of one removed)."""
    try:
        key = json.loads(MANIFEST.read_text()).get("key")
    except (OSError, ValueError, AttributeError):
        key = None
    fresh = key is not None and key == build_key()
    out = {}
    for name in MODULES:
        if _built(ROOT / name) is None:
            out[name] = "source"
        else:
            out[name] = "compiled" if fresh else "stale"
    ours = {(ROOT / name).with_name((ROOT / name).stem + SUFFIX) for name in MODULES}
    for ext in _extensions():
        if ext not in ours:
            out[ext.relative_to(ROOT).as_posix()] = "orphan"
    return out


def loaded() -> dict[str, bool]:
    """Whether each module, as imported in this process, is the compiled one."""
    out = {}
    for name in MODULES:
        dotted = name.removesuffix(".py").replace("/", ".")
        spec = importlib.util.find_spec(dotted)
        out[name] = spec is not None and spec.origin is not None and not spec.origin.endswith(".py")
    return out


_PROBE = "#include <stdio.h>\n#include <Python.h>\nint main(void) { return 0; }\n"


def compiler() -> str | None:
    """The C compiler Python's build uses, if it is installed and finds libc's and Python's headers."""
    cc = shutil.which((sysconfig.get_config_var("CC") or "cc").split()[0])
    if cc is None:
        return None
    probe = subprocess.run(  # noqa: S603 - the compiler sysconfig names, on a fixed probe
        [cc, "-fsyntax-only", "-I", sysconfig.get_paths()["include"], "-x", "c", "-"],
        input=_PROBE, capture_output=True, text=True, check=False, timeout=60,
    )
    return cc if probe.returncode == 0 else None


def clean() -> None:
    """Remove every extension module in the package, mypyc's shared library, its build directory
    and the manifest: the package then runs from its source."""
    for built in _extensions():
        built.unlink()
    for lib in ROOT.glob("*__mypyc*.so"):
        lib.unlink()
    MANIFEST.unlink(missing_ok=True)
    shutil.rmtree(ROOT / "build", ignore_errors=True)


def build() -> int:
    """Compile MODULES in place with mypyc; 0 when built.

    In place: a process that imports the package while this runs may find some modules built and
    others not (docs/OPERATIONS.md: build a release in its own checkout, before switching to it).
    """
    clean()
    key = build_key()  # before mypyc reads the sources: an edit meanwhile shows as stale
    env = {**os.environ, "MYPYC_OPT_LEVEL": _opt_level()}
    args = [sys.executable, "-m", "mypyc", "--ignore-missing-imports", "--follow-imports=silent", *MODULES]
    done = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, check=False)  # noqa: S603
    shutil.rmtree(ROOT / "build", ignore_errors=True)
    if done.returncode != 0:
        clean()  # never half a build: every module compiled, or none
        print(done.stdout[-4000:], done.stderr[-4000:], sep="\n", file=sys.stderr)
        return done.returncode
    MANIFEST.write_text(json.dumps({"key": key, "modules": list(MODULES)}, indent=1) + "\n")
    return 0


def main(argv: list[str]) -> int:
    """The command line (see the module doc)."""
    command = argv[0] if argv else "status"
    if command in ("build", "ensure"):
        if compiler() is None:  # what was built before would shadow the sources as they are now
            clean()
            print("no C compiler with libc's and Python's headers: the service runs from its Python source"
                  " (more CPU per event)", file=sys.stderr)
            return 0
        if command == "ensure" and set(status().values()) == {"compiled"}:
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
        return 1 if {"stale", "orphan"} & set(states.values()) else 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
