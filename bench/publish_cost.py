#!/usr/bin/env python3
"""Server CPU per published event, publish path alone (no subscribers): HTTP single, HTTP batch, in-process.

    .venv/bin/python bench/publish_cost.py [--n 3000] [--workers 1]

Starts a private redis-server and our gunicorn (bench/peers/chatgenius/start.sh,
CG_WORKERS workers), publishes over keep-alive HTTP from this process (one
connection, one request at a time, so nothing queues), and reads the workers'
CPU time from /proc before and after: µs of server CPU per event, for single
events and for batches of 100. It also measures
`chatgenius.realtime(app).publish` in a child process that built the app on the
same Redis (what a Flask view of the monolith pays per event: its own process's
CPU, the workers' readers get nothing since no stream is open).
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
PEER = BENCH / "peers" / "chatgenius"
RUN = BENCH / "run" / "chatgenius"


def cpu_of(pids: list[int]) -> float:
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


def workers() -> list[int]:
    master = int((RUN / "gunicorn.pid").read_text())
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(master)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def http_cost(port: int, token: str, n: int, batch: int) -> float:
    conn = http.client.HTTPConnection("127.0.0.1", port)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def body(i: int) -> str:
        ev = lambda k: {"channel": f"bench:c{k % 500}", "type": "message.created", "data": {"text": "hello", "n": k}}  # noqa: E731
        return json.dumps(ev(i) if batch == 1 else {"events": [ev(i * batch + j) for j in range(batch)]})

    def post(i: int) -> None:
        conn.request("POST", "/events", body(i), headers)
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 201, resp.status

    for i in range(50):  # warm-up: the token verified and cached, the script loaded
        post(i)
    pids = workers()
    c0 = cpu_of(pids)
    for i in range(n):
        post(i)
    return (cpu_of(pids) - c0) * 1e6 / (n * batch)


IN_PROCESS = """
from gevent import monkey; monkey.patch_all()
import sys, time
import chatgenius
from chatgenius.factory import create_app
app = create_app(env={"AUTH_MODE": "dev", "REDIS_URL": sys.argv[1], "WEB_CONCURRENCY": "1", "LOG_LEVEL": "WARNING"})
rt = chatgenius.realtime(app)
n = int(sys.argv[2])
for i in range(200):
    rt.publish("bench:c%d" % (i % 500), "message.created", {"text": "hello", "n": i})
t = time.process_time()
for i in range(n):
    rt.publish("bench:c%d" % (i % 500), "message.created", {"text": "hello", "n": i})
print((time.process_time() - t) * 1e6 / n)
"""


def in_process_cost(n: int) -> float:
    redis_url = f"redis://127.0.0.1:{(RUN / 'redis.port').read_text().strip()}/0"
    out = subprocess.run([sys.executable, "-c", IN_PROCESS, redis_url, str(n)], check=True, capture_output=True, text=True,
                         cwd=BENCH.parent)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=3000)
    ap.add_argument("--workers", type=int, default=1)
    args = ap.parse_args()
    env = dict(os.environ, CG_WORKERS=str(args.workers))
    subprocess.run([str(PEER / "stop.sh")], capture_output=True)
    subprocess.run([str(PEER / "start.sh")], check=True, env=env, capture_output=True)
    try:
        port = int(os.environ.get("CG_PORT", "18400"))
        token = (RUN / "token").read_text().strip()
        single = http_cost(port, token, args.n, 1)
        batch = http_cost(port, token, max(20, args.n // 100), 100)
        inproc = in_process_cost(args.n)
        print(f"HTTP single: {single:.0f} µs server CPU per event")
        print(f"HTTP batch of 100: {batch:.1f} µs server CPU per event")
        print(f"in-process realtime.publish: {inproc:.0f} µs CPU per event")
    finally:
        subprocess.run([str(PEER / "stop.sh")], capture_output=True)


if __name__ == "__main__":
    sys.exit(main())
