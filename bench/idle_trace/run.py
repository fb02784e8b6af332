"""Where an idle stream's memory goes in a real gunicorn gevent worker (tracemalloc inside it).

    .venv/bin/python bench/idle_trace/run.py 5000

Starts gunicorn (1 gevent worker, the project's gunicorn.conf.py, memory bus,
dev auth) with tracemalloc in the worker (gunicorn_trace.conf.py), opens N idle
streams from a child process, and prints the worker's RSS growth per stream and
the Python-heap growth per stream by allocation site. The heap is what
tracemalloc sees (Python objects, greenlet stack copies); RSS adds the
allocator's slack and what C code allocates outside Python's allocator.
With TRACE_FRAMES=0 tracemalloc stays off and only RSS is printed (with it on,
its own bookkeeping inflates RSS about twofold).
"""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tracemalloc
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
N = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
FRAMES = int(os.environ.get("TRACE_FRAMES", "1"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kib(pid: int) -> int:
    return int(re.search(r"VmRSS:\s+(\d+)", Path(f"/proc/{pid}/status").read_text()).group(1))


def snapshot(folder: str, name: str) -> tracemalloc.Snapshot:
    Path(folder, name + ".req").touch()
    target = Path(folder, name + ".snap")
    for _ in range(600):
        if target.exists():
            return tracemalloc.Snapshot.load(str(target))
        time.sleep(0.1)
    raise SystemExit(f"worker wrote no {name} snapshot")


def main() -> None:
    port = free_port()
    trace = tempfile.mkdtemp(prefix="idle-trace-")
    env = dict(os.environ, AUTH_MODE="dev", BIND=f"127.0.0.1:{port}", WEB_CONCURRENCY="1", LOG_LEVEL="warning",
               MAX_CONNECTIONS_PER_USER="10000", RATE_LIMIT_CONNECT="1000000/minute", TRACE_DIR=trace,
               TRACE_FRAMES=str(FRAMES))
    env.pop("REDIS_URL", None)
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", str(Path(__file__).with_name("gunicorn_trace.conf.py")), "wsgi:app"],
        cwd=ROOT, env=env, start_new_session=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                urllib.request.urlopen(base + "/healthz", timeout=1)
                break
            except OSError:
                time.sleep(0.2)
        req = urllib.request.Request(base + "/dev/token", data=json.dumps({"sub": "m", "channels": ["channel:*"]}).encode(),
                                     headers={"Content-Type": "application/json"})
        tok = json.load(urllib.request.urlopen(req))["token"]
        worker = int(subprocess.check_output(["pgrep", "-P", str(server.pid)]).split()[0])
        # Warm up: one stream opened and closed, so first-use allocations are not charged to the N.
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.sendall(f"GET /stream?channels=channel:idle HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {tok}\r\n\r\n".encode())
            s.recv(4096)
        time.sleep(1)
        snap0 = snapshot(trace, "before") if FRAMES else None
        rss0 = rss_kib(worker)
        holder = subprocess.Popen([sys.executable, "-c", f"""
import socket, sys, time
socks = []
for i in range({N}):
    s = socket.create_connection(("127.0.0.1", {port}))
    s.sendall(b"GET /stream?channels=channel:idle HTTP/1.1\\r\\nHost: x\\r\\nAuthorization: Bearer {tok}\\r\\n\\r\\n")
    socks.append(s)
for s in socks:
    while b"system.connected" not in s.recv(4096):
        pass
print("open", flush=True)
time.sleep(600)
"""], stdout=subprocess.PIPE, text=True)
        assert holder.stdout.readline().strip() == "open"
        time.sleep(2)
        rss1 = rss_kib(worker)
        if FRAMES == 0:  # RSS only: tracemalloc's own bookkeeping would double it
            holder.kill()
            print(f"N={N} worker RSS/stream={(rss1 - rss0) / N:.1f} KiB (tracemalloc off)")
            return
        snap1 = snapshot(trace, "after")
        holder.kill()
        heap = sum(d.size_diff for d in snap1.compare_to(snap0, "filename"))
        print(f"N={N} worker RSS/stream={(rss1 - rss0) / N:.1f} KiB  python heap/stream={heap / N / 1024:.1f} KiB")
        print("by file:")
        for d in snap1.compare_to(snap0, "filename")[:14]:
            where = d.traceback[0].filename.replace(str(ROOT) + "/", "").split("site-packages/")[-1]
            print(f"  {d.size_diff / N:8.0f} B/stream  {d.count_diff / N:5.1f} blocks  {where}")
        print("by line:")
        for d in snap1.compare_to(snap0, "lineno")[:25]:
            if d.size_diff / N >= 16:
                where = str(d.traceback[0]).replace(str(ROOT) + "/", "").split("site-packages/")[-1]
                print(f"  {d.size_diff / N:8.0f} B/stream  {d.count_diff / N:5.1f} blocks  {where}")
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(10)


if __name__ == "__main__":
    main()
