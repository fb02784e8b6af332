#!/usr/bin/env python3
"""Redis' CPU per call of lua/publish.lua: this checkout's script against another revision's.

    .venv/bin/python bench/script_cost.py --against 83f5da6 [--n 20000] [--rounds 4]

Starts a private redis-server (no persistence), then alternates the two scripts
round by round: each round publishes `n` single events over 500 channels
through chatgenius.bus.redis_publish.PublishScript (one script call each, one
at a time from this process) and reads Redis' own CPU (INFO cpu:
used_cpu_user + used_cpu_sys) before and after. Prints µs of Redis CPU per
call for each round, then the means. What Redis spends on its connection to
this client is in both columns alike; the difference is the script's.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT)]

import redis  # noqa: E402
from support.procs import find_redis_server, free_port  # noqa: E402

from chatgenius.bus.redis_publish import PublishScript, script_source  # noqa: E402
from chatgenius.events import draft  # noqa: E402


def redis_cpu(client: redis.Redis) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--against", required=True, help="a git revision whose chatgenius/bus/lua/publish.lua to compare with")
    ap.add_argument("--n", type=int, default=20000, help="calls per round")
    ap.add_argument("--rounds", type=int, default=4)
    args = ap.parse_args()
    other = subprocess.run(
        ["git", "show", f"{args.against}:chatgenius/bus/lua/publish.lua"], cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout
    scripts = {"this checkout": script_source(), args.against: other}
    port = free_port()
    server = subprocess.Popen([find_redis_server() or "redis-server", "--port", str(port), "--save", "", "--appendonly", "no"],
                              stdout=subprocess.DEVNULL)
    try:
        client = redis.Redis(port=port)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        body = {"type": "message.created", "data": {"text": "hello there"}}
        drafts = [draft({"channel": f"channel:c{i}", **body}, 1 << 16) for i in range(500)]
        results: dict[str, list[float]] = {name: [] for name in scripts}
        for rnd in range(args.rounds):
            order = list(scripts) if rnd % 2 == 0 else list(reversed(scripts))  # ABBA
            for name in order:
                publisher = PublishScript(client, 1000, 3600, runner=client.register_script(scripts[name]))
                for d in drafts[:100]:
                    publisher.publish([d])  # warm: the script cached, the streams made
                before = redis_cpu(client)
                for i in range(args.n):
                    publisher.publish([drafts[i % len(drafts)]])
                results[name].append((redis_cpu(client) - before) / args.n * 1e6)
                print(f"round {rnd + 1} {name}: {results[name][-1]:.1f} µs of Redis CPU per call", flush=True)
        for name, values in results.items():
            print(f"{name}: mean {statistics.mean(values):.1f} µs (rounds: {', '.join(f'{v:.1f}' for v in values)})")
    finally:
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    main()
