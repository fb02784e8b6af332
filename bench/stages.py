#!/usr/bin/env python3
"""Per-stage breakdown of py-spy's collapsed stacks (bench/profile_chat.sh) for one publish.

    python3 bench/stages.py bench/results/profile-<stamp>/workers.txt [CPU_US_PER_PUBLISH]

With the run's server CPU per publish (µs, from the same run's ssebench line),
each share is also shown as µs per publish. py-spy samples a running thread,
including time inside a syscall during which the kernel may have switched to
another process (on loopback, a send wakes its reader): shares of syscall-heavy
stages (socket writes) lean high; the CPU per publish is /proc's.

Each sample is put in the first stage (in the order below) whose marker is on its
stack, so the shares add up to 100 % of the workers' active samples. Markers are
function names as py-spy prints them (`name (file.py:line)`), matched on the
name and the file's last path parts.
"""
from __future__ import annotations

import re
import sys
from collections import Counter

# (stage, markers): a sample goes to the first stage one of whose markers is in its stack.
STAGES = [
    ("HTTP answer: head and body sends", ["Response.send_headers (gunicorn/http/wsgi.py", "Response.write (gunicorn/http/wsgi.py",
                                          "Response.close (gunicorn/http/wsgi.py"]),
    ("Lua call (EVALSHA: pack, send, wait, parse)", ["Script.__call__ (chatgenius/bus/redis_script.py",
                                                     "Script.__call__ (redis/commands/core.py", "Redis.execute_command (redis/client.py"]),
    ("auth (token check)", ["Verifier.", "identity (chatgenius/web/common.py", "Realtime.identify"]),
    ("validation and envelope", ["drafts_from_request (chatgenius/events.py", "draft (chatgenius/events.py"]),
    ("limiter (flask-limiter)", ["Limiter.", "(flask_limiter/"]),
    ("metrics middleware (prometheus-flask-exporter)", ["(prometheus_flask_exporter/"]),
    ("JSON body parse", ["json_body (chatgenius/web/common.py", "loads (json/__init__.py"]),
    ("publish: the rest of the service call", ["Realtime.publish (chatgenius/service.py"]),
    ("Flask request machinery (context, routing, hooks, response)", ["Flask.wsgi_app (flask/app.py"]),
    ("fast path: the rest", ["FastPublish."]),
    ("lean path: read, head, body, answer's head and send", ["LeanPublish.", "(chatgenius/web/publish_head.py",
                                                             "_take (chatgenius/gunicorn_worker.py"]),
    ("request parsing (gunicorn)", ["Request.__init__ (gunicorn/http/message.py", "Parser.__next__ (gunicorn/http/parser.py",
                                    "create (gunicorn/http/wsgi.py", "environ (gunicorn/http/wsgi.py"]),
    ("reader: socket writes to streams", ["GunicornSocket.send_nowait (chatgenius/wire.py", "GunicornSocket.write"]),
    ("reader: dispatch (hub, subscribers)", ["Hub.dispatch", "Subscriber.offer", "Subscriber.write_now"]),
    ("reader: pub/sub read and parse", ["RedisBus.handle_arrived", "RedisFeed._serve", "PubSub.", "FeedReplies."]),
    ("stream loops (queued writes, heartbeats)", ["serve (chatgenius/stream.py", "_flush (chatgenius/stream.py", "StreamBody."]),
    ("gunicorn keep-alive loop, accept", ["AsyncWorker.handle (gunicorn/workers/base_async.py", "GeventWorker.handle",
                                            "PublishWorker.handle"]),
    ("gevent hub (event loop, switches)", ["Hub.run (gevent/hub.py"]),
]


def main(path: str, per_publish: float | None = None) -> None:
    counts: Counter[str] = Counter()
    total = 0
    for line in open(path):
        stack, _, n = line.rstrip("\n").rpartition(" ")
        if not n.isdigit():
            continue
        total += int(n)
        for stage, markers in STAGES:
            if any(m in stack for m in markers):
                counts[stage] += int(n)
                break
        else:
            leaf = re.sub(r" \(.*$", "", stack.split(";")[-1])
            counts["other: " + leaf] += int(n)
    unit = f" | µs per publish (of {per_publish:,.0f})" if per_publish else ""
    print(f"| stage | share of worker samples ({total:,}){unit} |\n|---|---:|" + ("---:|" if per_publish else ""))

    def us(n: int) -> str:
        return f" | {n * per_publish / total:,.0f}" if per_publish else ""

    other = 0
    for stage, _ in STAGES:
        if counts[stage]:
            print(f"| {stage} | {100 * counts[stage] / total:.1f} %{us(counts[stage])} |")
    for stage, n in counts.items():
        if stage.startswith("other: "):
            other += n
    top = ", ".join(f"{s[7:]} {100 * n / total:.1f} %" for s, n in counts.most_common() if s.startswith("other: "))[:300]
    print(f"| other ({top}) | {100 * other / total:.1f} %{us(other)} |")


if __name__ == "__main__":
    main(sys.argv[1], float(sys.argv[2]) if len(sys.argv) > 2 else None)
