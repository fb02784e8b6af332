"""Group `perf script -F comm,pid,ip,sym,dso` samples (CPython 3.12, PYTHONPERFSUPPORT=1) by stage.

    python3 by_stage.py script.txt US_PER_PUBLISH

Each sample goes to the stage of its innermost Python function (`py::name:file` frame), user or
kernel by its leaf frame, and is scaled to µs per publish with the run's server CPU per publish.
"""

from __future__ import annotations

import re
import sys
from collections import Counter

STAGES = [
    ("metrics", ["prometheus_client", "telemetry.py"]),
    ("json", ["json/"]),
    ("http head/answer", ["publish_head.py", "gunicorn_worker.py", "send_whole"]),
    ("publish service", ["publish_fast.py", "service.py", "publishing.py", "events.py", "auth.py", "cursor.py",
                         "unique.py", "<string>", "enum.py", "log.py"]),
    ("redis call", ["redis_replies.py", "redis_script.py", "redis_publish.py", "bus/redis.py:RedisBus.publish"]),
    ("reader", ["redis_feed.py", "bus/redis.py", "sse.py"]),
    ("dispatch", ["fanout.py", "subscriber.py", "detached.py", "stream.py"]),
    ("wait/hub", ["readable.py", "hub.py", "greenlet"]),
    ("ticker/bg", ["ticker.py", "background.py"]),
]
PY_FRAME = re.compile(r"py::([^:]+):(\S+)")


def samples(path: str) -> list[list[str]]:
    """perf script's samples: a header line, then one line per frame, leaf first."""
    out: list[list[str]] = []
    current: list[str] = []
    for line in open(path):
        if line.strip():
            current.append(line.rstrip())
        elif current:
            out.append(current)
            current = []
    if current:
        out.append(current)
    return out


def stage_of(frames: list[str]) -> str:
    """The stage of the innermost Python frame."""
    for frame in frames:
        m = PY_FRAME.search(frame)
        if m:
            where = m.group(2) + ":" + m.group(1)
            return next((name for name, marks in STAGES if any(mark in where for mark in marks)), "other")
    return "(no py frame)"


def main() -> None:
    """Print µs per publish by stage, user and kernel."""
    found = samples(sys.argv[1])
    per = float(sys.argv[2])
    user: Counter[str] = Counter()
    kernel: Counter[str] = Counter()
    for sample in found:
        frames = sample[1:]
        in_kernel = bool(frames) and "[kernel.kallsyms]" in frames[0]
        (kernel if in_kernel else user)[stage_of(frames)] += 1
    print(f"samples {len(found)}; us/publish {per}")
    for name in sorted(set(user) | set(kernel), key=lambda s: -(user[s] + kernel[s])):
        print(f"{name:20s} user {user[name] * per / len(found):6.1f}  kernel {kernel[name] * per / len(found):6.1f}")


if __name__ == "__main__":
    main()
