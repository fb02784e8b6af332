"""Python calls per event from the workers' cProfile dumps (argv: number of events, then the .pstats files)."""

import collections
import pstats
import sys

EV = int(sys.argv[1])
st = pstats.Stats(*sys.argv[2:])


def where(path: str) -> str:
    """Who a called function belongs to: a built-in, ours, a package, or the standard library."""
    if path == "~":
        return "built-in"
    if "/chatgenius/" in path:
        return "chatgenius"
    if "site-packages/" in path:
        return path.split("site-packages/")[1].split("/")[0]
    return "stdlib " + path.rsplit("/", 1)[-1]


print(f"calls per event, all: {sum(v[1] for v in st.stats.values()) / EV:.1f}")
by: collections.Counter = collections.Counter()
for (path, _line, _name), v in st.stats.items():
    by[where(path)] += v[1]
print("\n| calls per event | to functions of |\n|---:|---|")
for k, v in by.most_common():
    print(f"| {v / EV:.2f} | {k} |")
print("\n| calls per event | function |\n|---:|---|")
for (path, line, name), v in sorted(st.stats.items(), key=lambda kv: -kv[1][1])[:40]:
    short = path.split("site-packages/")[-1].split("/chatgenius/")[-1].split("lib/python3.11/")[-1]
    print(f"| {v[1] / EV:.2f} | {short}:{line} {name} |")
print("\n| calls per event | function of chatgenius |\n|---:|---|")
ours = [(v[1], path, line, name) for (path, line, name), v in st.stats.items() if where(path) == "chatgenius"]
for calls, path, line, name in sorted(ours, reverse=True):
    print(f"| {calls / EV:.2f} | {path.split('/chatgenius/')[-1]}:{line} {name} |")
