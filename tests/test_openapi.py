"""The API document is complete and served: every route of the app is in docs/openapi.yaml and every
documented route exists (methods included), the running app serves the same document at /openapi.json,
and docs/API.md names every path. The docs stand alone: no reference to files outside the repository."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
import yaml
from flask import Flask
from support.procs import REPO_ROOT

import chatgenius
from chatgenius.factory import create_app

METHODS = {"get", "post", "put", "delete", "patch"}
TEXT_SUFFIXES = {".md", ".py", ".js", ".mjs", ".html", ".yaml", ".yml", ".sh", ".conf", ".json", ".service", ".example", ".txt", ""}


@pytest.fixture(scope="module")
def app() -> Iterator[Flask]:
    app = create_app(env={"AUTH_MODE": "dev"})
    yield app
    chatgenius.close(app)


def openapi_path(rule: str) -> str:
    """Flask's `/presence/<channel>` and `/static/<path:name>` as OpenAPI's `/presence/{channel}`."""
    return re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", rule)


def served(app: Flask) -> set[tuple[str, str]]:
    return {(m.lower(), openapi_path(r.rule)) for r in app.url_map.iter_rules() for m in r.methods - {"HEAD", "OPTIONS"}}


def documented(spec: dict) -> set[tuple[str, str]]:
    return {(m, path) for path, item in spec["paths"].items() for m in item if m in METHODS}


def test_every_route_is_documented_and_every_documented_route_exists(app: Flask) -> None:
    spec = yaml.safe_load((REPO_ROOT / "docs/openapi.yaml").read_text())
    assert served(app) - documented(spec) == set(), "routes missing from docs/openapi.yaml"
    assert documented(spec) - served(app) == set(), "docs/openapi.yaml describes routes the app does not serve"
    for path, item in spec["paths"].items():
        params = {p["name"] for op in item.values() if isinstance(op, dict) for p in op.get("parameters", []) if p.get("in") == "path"}
        assert params == set(re.findall(r"{(\w+)}", path)), f"{path}: path parameters {params}"


def test_the_app_serves_the_document_as_json_without_a_token(app: Flask) -> None:
    resp = app.test_client().get("/openapi.json")
    assert resp.status_code == 200 and resp.mimetype == "application/json"
    assert resp.json == yaml.safe_load((REPO_ROOT / "docs/openapi.yaml").read_text())
    assert resp.json["openapi"].startswith("3.1") and documented(resp.json) == served(app)

    def keys(node: object) -> Iterator[object]:
        if isinstance(node, dict):
            yield from node
            for value in node.values():
                yield from keys(value)
        elif isinstance(node, list):
            for value in node:
                yield from keys(value)

    # YAML 1.1 reads an unquoted `on:`/`yes:`/`200:` key as a bool or an int; JSON would quietly stringify it.
    assert {type(k) for k in keys(yaml.safe_load((REPO_ROOT / "docs/openapi.yaml").read_text()))} == {str}


def test_api_md_names_every_documented_path(app: Flask) -> None:
    text = re.sub(r"<(\w+)>", r"{\1}", (REPO_ROOT / "docs/API.md").read_text())
    text = text.replace("/admin/connections/{id}", "/admin/connections/{connection_id}")
    missing = sorted({path for _, path in served(app) if f"{path}" not in text})
    assert missing == [], f"docs/API.md does not name {missing}"


def test_docs_and_code_cite_nothing_a_reader_of_the_repository_cannot_see() -> None:
    roots = ["README.md", "docs", "chatgenius", "static", "deploy", "bench", "gunicorn.conf.py", "app.py", "wsgi.py", "tests"]
    pattern = re.compile(r"\.\./shared|/work/shared|CONTRACT\.md|SPEC-DB|\b[Ii]ssues? #?[0-9]+")
    hits = []
    for root in roots:
        base = REPO_ROOT / root
        for path in [base] if base.is_file() else base.rglob("*"):
            if path.is_dir() or path.suffix not in TEXT_SUFFIXES or path.stat().st_size > 1 << 20:  # not built binaries
                continue
            if ".venv" in path.parts or "__pycache__" in path.parts or path == REPO_ROOT / "tests/test_openapi.py":
                continue
            for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
                if pattern.search(line):
                    hits.append(f"{path.relative_to(REPO_ROOT)}:{n}: {line.strip()}")
    assert hits == []


def test_admin_is_the_admin_page_short_address(app: Flask) -> None:
    resp = app.test_client().get("/admin")
    assert resp.status_code == 302 and resp.headers["Location"] == "/static/admin.html"
    with app.test_client().get(resp.headers["Location"]) as page:
        assert page.status_code == 200 and b"admin" in page.data
