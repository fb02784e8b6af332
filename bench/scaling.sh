#!/usr/bin/env bash
# How our fan-out scales with gunicorn workers (1, 2, 4) and with subscribers
# (100, 1000, 10000): the fanout scenario, ours only, once per configuration.
#
#   bench/scaling.sh            # 10 s steps with the refine pass
#   QUICK=1 bench/scaling.sh    # 5 s steps, no refine pass
#   WORKERS="1 2 4" SUBS="100 1000 10000" bench/scaling.sh
set -uo pipefail
BENCH_DIR="$(cd "$(dirname "$0")" && pwd)"
STAMP=$(date +%Y%m%d-%H%M%S)
ROOT_OUT=${OUT_DIR:-$BENCH_DIR/results/$STAMP-scaling}
WORKERS=${WORKERS:-1 2 4}
SUBS=${SUBS:-100 1000 10000}
mkdir -p "$ROOT_OUT"
for w in $WORKERS; do
  CG_WORKERS=$w FAN_N=1000 OUT_DIR=$ROOT_OUT/workers-$w TARGETS=chatgenius SCENARIOS=fanout "$BENCH_DIR/run.sh" | grep -v '^|\|^#\|^$\|^(-1'
done
for n in $SUBS; do
  [[ $n == 1000 && " $WORKERS " == *" 2 "* ]] && continue   # same as workers-2
  CG_WORKERS=2 FAN_N=$n OUT_DIR=$ROOT_OUT/subs-$n TARGETS=chatgenius SCENARIOS=fanout "$BENCH_DIR/run.sh" | grep -v '^|\|^#\|^$\|^(-1'
done
python3 - "$ROOT_OUT" <<'PY' | tee "$ROOT_OUT/summary.md"
import json, os, sys
root = sys.argv[1]
print("| configuration | subscribers | max sustained deliveries/s | at max: events/s | 10 ev/s: p99 ms, µs/del | 100 ev/s: p99 ms, µs/del | stop |")
print("|---|---:|---:|---:|---|---|---|")
def key(d):
    kind, _, v = d.partition("-")
    return (kind, int(v))
for sub in sorted((d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d))), key=key):
    p = os.path.join(root, sub, "chatgenius.jsonl")
    if not os.path.exists(p):
        continue
    rows = [json.loads(l) for l in open(p) if l.startswith("{")]
    best = max(rows, key=lambda d: d.get("max_ok_deliveries_per_s") or 0)
    main = [d for d in rows if d["scenario"] == "fanout"][-1]
    cells = []
    for rate in (10, 100):
        st = next((s for s in main["steps"] if s["rate"] == rate), None)
        cells.append(f"{st['latency_ms']['p99']:.0f}, {st['server_plus_redis_cpu_us_per_delivery']}" if st else "-")
    print(f"| {sub} | {main['n']:,} | {best.get('max_ok_deliveries_per_s') or 0:,.0f} | {best.get('max_ok_rate') or 0:g} | {cells[0]} | {cells[1]} | {main.get('stop_reason', '')} |")
PY
