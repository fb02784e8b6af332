"""Files shipped beside the code: the bundled client (static/) and the OpenAPI document (docs/).

The repository keeps them at its top level; a wheel maps them into the package
(`chatgenius/static`, `chatgenius/apidoc`: pyproject.toml, `package-dir`). The
installed location wins, so a service run from site-packages never reads a
checkout that happens to sit in its working directory.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent
_REPO = _PACKAGE.parent


def _find(packaged: str, in_repo: str, marker: str) -> Path:
    for candidate in (_PACKAGE / packaged, _REPO / in_repo):
        if (candidate / marker).is_file():
            return candidate
    raise FileNotFoundError(f"{marker} is neither in {_PACKAGE / packaged} nor in {_REPO / in_repo}")


def static_dir() -> Path:
    """The directory of the demo page and the JS client."""
    return _find("static", "static", "chatgenius-realtime.js")


def openapi_path() -> Path:
    """docs/openapi.yaml, wherever this copy of the package keeps it."""
    return _find("apidoc", "docs", "openapi.yaml") / "openapi.yaml"
