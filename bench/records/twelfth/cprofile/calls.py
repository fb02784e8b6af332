"""Python calls per event from the workers' cProfile dumps (argv: number of events, then the .pstats files)."""
import sys, pstats

EV = int(sys.argv[1])
st = pstats.Stats(*sys.argv[2:])
print(f"calls per event, all functions: {sum(v[1] for v in st.stats.values()) / EV:.1f}")
print("| calls per event | function |\n|---:|---|")
for (f, l, name), (cc, nc, tt, ct, callers) in sorted(st.stats.items(), key=lambda kv: -kv[1][1])[:40]:
    short = f.split("site-packages/")[-1].split("/work/prof/")[-1].split("lib/python3.11/")[-1]
    print(f"| {nc / EV:.2f} | {short}:{l} {name} |")
