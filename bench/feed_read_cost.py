#!/usr/bin/env python3
"""CPU per message of the live feed's read (bus/redis_feed.FeedReplies), both ways it can read.

    .venv/bin/python bench/feed_read_cost.py [--n 6000] [--rate 3000] [--rounds 3]

A gevent process subscribes one connection to a private redis-server and reads
`--n` messages that another process publishes at `--rate` per second (spaced, so
each read waits, as a worker's reader does under chat traffic). It reports the
reading process's CPU (user + system) per message, alternating the two paths:
`direct` (off the socket, into the connection's hiredis reader: the service's
path) and `redis-py` (its `read_response`, the fallback for TLS connections and
what every read went through before). The reader takes what arrived behind each
message with `next(0)`, as RedisBus.handle_arrived does.
"""
from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import os  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import redis  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from chatgenius.bus.redis_feed import FeedReplies  # noqa: E402

PUBLISHER = """
import sys, time, redis
port, n, rate = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
r = redis.Redis(port=port)
start = time.perf_counter()
for i in range(n):
    r.publish("live:c", b"x" * 120)
    time.sleep(max(0.0, start + (i + 1) / rate - time.perf_counter()))
r.publish("live:c", b"END")
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def read_cost(port: int, path: str, n: int, rate: float) -> float:
    conn = redis.Connection(port=port)  # hiredis parses either way, as in the service
    conn.connect()
    replies = FeedReplies(conn, direct=path == "direct")
    conn.send_command("SUBSCRIBE", "live:c")
    assert replies.next(5.0)[0] == b"subscribe"
    pub = subprocess.Popen([sys.executable, "-c", PUBLISHER, str(port), str(n), str(rate)])
    got, ended = 0, False
    started = time.process_time()
    while not ended:
        msg = replies.next(5.0)
        while msg is not None:
            got += 1
            if msg[2] == b"END":
                ended = True
                break
            msg = replies.next(0)
    cpu = time.process_time() - started
    pub.wait()
    replies.close()
    conn.disconnect()
    assert got == n + 1, (got, n)
    return cpu / got * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=6000)
    ap.add_argument("--rate", type=float, default=3000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        server = subprocess.Popen(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", tmp], stdout=subprocess.DEVNULL)
        try:
            client = redis.Redis(port=port)
            for _ in range(100):
                try:
                    client.ping()
                    break
                except redis.ConnectionError:
                    time.sleep(0.05)
            print(f"# {args.n} messages at {args.rate:g}/s, CPU of the reading process (pid {os.getpid()})")
            for r in range(args.rounds):
                for path in ("redis-py", "direct") if r % 2 == 0 else ("direct", "redis-py"):
                    print(f"{path:8} {read_cost(port, path, args.n, args.rate):6.1f} µs per message", flush=True)
        finally:
            server.terminate()
            server.wait()


if __name__ == "__main__":
    main()
