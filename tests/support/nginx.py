"""Run the shipped nginx config (deploy/nginx.conf) in front of test backends.

The template is rewritten line by line, changing only addresses and paths, so
what is tested is the real proxy configuration (buffering, timeouts, gzip).

Markers: a comment at the end of a line in the template, one directive per line.
  `# test:listen`    `listen ADDR [params];` -> `listen 127.0.0.1:<port> [params];`
  `# test:upstream`  `server ADDR [params];` -> one `server 127.0.0.1:<p> [params];`
                     per backend (write one such line per upstream block)
  `# test:root`      `root PATH;` / `alias PATH/;` -> the test's static dir, verbatim
                     (default <repo>/static, so `location /static/ { alias ...; }`
                     fits it; with `root`, pass static_root=<repo>)
  `# test:drop`      the line is removed (ssl, IPv6 listen, load_module, ...)
Automatic, no marker needed:
  `pid`, `error_log`, `access_log`, `*_temp_path` paths -> `<tmp>/<basename>`
  (`off`, `stderr`, `syslog:` and `memory:` targets are kept);
  `user`, `daemon`, `master_process` lines are dropped (`user root;` is added
  when running as root, else workers would be `nobody` and could not read tmp);
  missing `pid`, `access_log` and temp paths are added pointing into <tmp>;
  a relative `include` is resolved against the template's dir, then /etc/nginx;
  a template without an `http {` line (a bare server/upstream snippet) is
  wrapped in `events {} http { include mime.types; ... }`.
An unmarked `listen` is an error: it would bind a real port on the machine.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .procs import REPO_ROOT, Managed, free_port, port_open, spawn, tail, terminate_tree, wait_until

NGINX = "/usr/sbin/nginx"
TEMP_DIRS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
_MARKER = re.compile(r"\s*#\s*test:(\w+)\s*$")
_DIRECTIVE = re.compile(r"^(\s*)([\w]+)(\s+)([^\s;]+)(.*)$")
_KEEP = ("off", "stderr")


def _relocate(target: str, workdir: Path) -> str:
    if target in _KEEP or target.startswith(("syslog:", "memory:")):
        return target
    return str(workdir / Path(target).name)


@dataclass(frozen=True)
class Rendered:
    """A rendered config and the log files it will write."""

    text: str
    access_logs: list[Path]
    error_logs: list[Path]


def render_config(
    template: str,
    *,
    port: int,
    upstreams: Sequence[str],
    workdir: Path,
    static_root: Path,
    template_dir: Path = Path("/etc/nginx"),
) -> Rendered:
    """Apply the marker and automatic rules described in the module docstring."""
    out: list[str] = []
    seen: set[str] = set()
    logs: dict[str, list[Path]] = {"access_log": [], "error_log": []}
    for lineno, raw in enumerate(template.splitlines(), 1):
        marker = _MARKER.search(raw)
        code = raw[: marker.start()] if marker else raw
        m = _DIRECTIVE.match(code)
        name = m.group(2) if m else ""
        kind = marker.group(1) if marker else None
        if kind == "drop" or name in ("user", "daemon", "master_process"):
            continue
        seen.add(name)
        if m is None:
            if kind:
                raise ValueError(f"line {lineno}: test:{kind} on a line without a directive")
            out.append(raw)
            continue
        indent, _, gap, arg, rest = m.groups()
        if kind == "listen" and name == "listen":
            out.append(f"{indent}listen{gap}127.0.0.1:{port}{rest}")
        elif kind == "upstream" and name == "server":
            out += [f"{indent}server{gap}{addr}{rest}" for addr in upstreams]
        elif kind == "root" and name in ("root", "alias"):
            path = f"{static_root}/" if arg.endswith("/") else str(static_root)
            out.append(f"{indent}{name}{gap}{path}{rest}")
        elif kind is not None:
            raise ValueError(f"line {lineno}: test:{kind} does not apply to {name!r}")
        elif name == "listen":
            raise ValueError(f"line {lineno}: unmarked listen; add # test:listen or # test:drop")
        elif name in ("pid", "error_log", "access_log") or name.endswith("_temp_path"):
            target = _relocate(arg, workdir)
            if name in logs and target.startswith("/"):
                logs[name].append(Path(target))
            out.append(f"{indent}{name}{gap}{target}{rest}")
        elif name == "include" and not os.path.isabs(arg):
            local = template_dir / arg
            resolved = local if local.exists() else Path("/etc/nginx") / arg
            out.append(f"{indent}include{gap}{resolved}{rest}")
        else:
            out.append(raw)

    head = [] if "pid" in seen else [f"pid {workdir / 'nginx.pid'};"]
    if os.geteuid() == 0:
        head.append("user root;")
    inject = [f"    {d}_temp_path {workdir / d};" for d in TEMP_DIRS if f"{d}_temp_path" not in seen]
    if "access_log" not in seen:
        logs["access_log"].append(workdir / "access.log")
        inject.append(f"    access_log {workdir / 'access.log'};")
    http_at = next((i for i, line in enumerate(out) if re.match(r"\s*http\s*\{", line)), None)
    if http_at is None:
        body = [
            "events {}",
            "http {",
            "    include /etc/nginx/mime.types;",
            "    default_type application/octet-stream;",
            *inject,
            *out,
            "}",
        ]
    else:
        body = out[: http_at + 1] + inject + out[http_at + 1 :]
        if "events" not in seen:
            body.insert(0, "events {}")
    text = "\n".join(head + body) + "\n"
    return Rendered(text, logs["access_log"], logs["error_log"])


class Nginx(Managed):
    """nginx -p <tmp> -c <rendered template> -g 'daemon off;' on a free port."""

    def __init__(
        self,
        template: Path | str,
        upstreams: Sequence[int | str],
        *,
        port: int | None = None,
        static_root: Path | None = None,
        workdir: Path | None = None,
        binary: str = NGINX,
        startup_timeout: float = 10.0,
    ) -> None:
        self.template = Path(template)
        self.port = port or free_port()
        self.binary = binary
        self.startup_timeout = startup_timeout
        self._owns_dir = workdir is None
        self.dir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="nginx-"))
        self.dir.mkdir(parents=True, exist_ok=True)
        self.conf_path = self.dir / "nginx.conf"
        self.error_log_path = self.dir / "error.log"
        self.out_path = self.dir / "nginx.out"
        addrs = [f"127.0.0.1:{u}" if isinstance(u, int) else u for u in upstreams]
        self.rendered = render_config(
            self.template.read_text(),
            port=self.port,
            upstreams=addrs,
            workdir=self.dir,
            static_root=static_root or REPO_ROOT / "static",
            template_dir=self.template.parent,
        )
        self.conf_path.write_text(self.rendered.text)
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise RuntimeError("nginx is not started")
        return self._proc.pid

    def start(self) -> Nginx:
        """Spawn nginx; return once it accepts connections on the port."""
        argv = [self.binary, "-p", str(self.dir), "-e", str(self.error_log_path), "-c", str(self.conf_path), "-g", "daemon off;"]
        if self._proc is not None and self._proc.poll() is None:
            return self
        self._proc = spawn(argv, self.out_path, self.dir)
        proc = self._proc

        def up() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"nginx exited with {proc.returncode}")
            return port_open(self.port)

        try:
            wait_until(up, self.startup_timeout, message=f"nginx on :{self.port}")
        except (AssertionError, RuntimeError) as exc:
            self.stop()
            raise AssertionError(
                f"{exc}\n{tail(self.out_path)}\n{tail(self.error_log_path)}\n--- {self.conf_path} ---\n{self.conf_path.read_text()}"
            ) from None
        return self

    def reload(self) -> None:
        """SIGHUP: re-read the config (the rendered file may be edited first)."""
        os.kill(self.pid, signal.SIGHUP)

    def stop(self, graceful: bool = False, timeout: float = 10.0) -> None:
        """SIGTERM (fast: drops open streams) or SIGQUIT (graceful: waits for them), then SIGKILL."""
        if self._proc is not None:
            terminate_tree(self._proc, signal.SIGQUIT if graceful else signal.SIGTERM, timeout)

    def access_log_lines(self) -> list[str]:
        """Lines of every access log the config writes, in config order."""
        return _read_lines(self.rendered.access_logs)

    def error_log_lines(self) -> list[str]:
        """Lines of the startup error log (-e) and every error_log the config names."""
        return _read_lines([self.error_log_path, *self.rendered.error_logs])





def _read_lines(paths: Sequence[Path]) -> list[str]:
    lines: list[str] = []
    for path in dict.fromkeys(paths):
        if path.exists():
            lines += path.read_text(errors="replace").splitlines()
    return lines
