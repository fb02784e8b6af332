"""The package as a user installs it: a wheel built from a clean copy of the checkout, in a fresh venv.

The wheel is built from the files git would ship (tracked, plus new ones not
ignored), copied outside the repository, so a stray build artefact cannot make
it pass. The venv gets the wheel alone; its dependencies come from the test
venv through a .pth file (offline and fast), and the package itself must come
from the venv, never from the checkout.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from support.procs import REPO_ROOT


def shipped_files() -> list[str]:
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO_ROOT, capture_output=True, check=True,
    ).stdout.decode()
    return [name for name in out.split("\0") if name and (REPO_ROOT / name).is_file() and not (REPO_ROOT / name).is_symlink()]


@dataclass(frozen=True)
class Installed:
    wheel: Path
    venv: Path

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    @property
    def site_packages(self) -> Path:
        return next((self.venv / "lib").glob("python3*/site-packages"))

    def run(self, *argv: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(list(argv), cwd=cwd or self.venv.parent, env=env, capture_output=True, text=True, timeout=60, check=False)


@pytest.fixture(scope="session")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    if shutil.which("git") is None:
        pytest.fail("git is needed to list the files a wheel is built from")
    root = tmp_path_factory.mktemp("wheel")
    src = root / "src"
    for name in shipped_files():
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO_ROOT / name, src / name)
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "-q", "-w", str(root / "dist")],
                           capture_output=True, text=True, timeout=300, check=False)
    assert build.returncode == 0, build.stdout + build.stderr
    (wheel,) = (root / "dist").glob("chatgenius_realtime-*.whl")

    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60)
    inst = Installed(wheel, venv)
    # The dependencies: the test venv's site-packages, appended after the venv's own (a .pth line).
    (inst.site_packages / "deps-from-test-venv.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    done = subprocess.run([sys.executable, "-m", "pip", "--python", str(inst.python), "install", "--no-deps", "-q", str(wheel)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    # gunicorn's console script lives in the test venv's bin/; the same entry for this interpreter.
    script = venv / "bin" / "gunicorn"
    script.write_text(f"#!{inst.python}\nimport sys\nfrom gunicorn.app.wsgiapp import run\nsys.exit(run())\n")
    script.chmod(0o755)
    yield inst
