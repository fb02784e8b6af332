#!/usr/bin/env bash
# usage: fan10_profile.sh [RATE]: where a worker's CPU goes with 1,000 streams on one channel at RATE
# ev/s (default 10): py-spy (1,000 Hz, 15 s) over both gunicorn workers during the second 25 s step,
# samples put in a few buckets by the frames they hold. Added in the eighth session.
R=${1:-10}
cd "$(git rev-parse --show-toplevel)/bench"; source lib.sh
PYSPY=../.venv/bin/py-spy; OUT=$(mktemp -d)
peers/chatgenius/stop.sh >/dev/null 2>&1; sleep 0.5
peers/chatgenius/start.sh >/dev/null 2>&1 || { echo start failed; exit 1; }
trap 'peers/chatgenius/stop.sh >/dev/null 2>&1' EXIT
source peers/chatgenius/target.env
W=$(ps -o pid= --ppid "$(cat "$SERVER_PIDFILE")" | tr -d ' ')
ssebench/ssebench run -label x -scenario fanout -pub-conc 16 -n 1000 -sub-url "$SUB_URL" -chan "$CHAN" \
  -payload "$PAYLOAD" -ready prime -server-pids "$(cat "$SERVER_PIDFILE")" -out "$OUT/run.jsonl" -pub http \
  -pub-url "$PUB_URL" -H-rotate "$SUB_HEADER_FILE" -pub-H "Authorization: Bearer $TOKEN" \
  -pub-H "Content-Type: application/json" -rates "$R,$R" -duration 25s -max-time 4m >/dev/null 2>"$OUT/run.log" &
gen=$!
until grep -q "step 2: rate" "$OUT/run.log" 2>/dev/null; do kill -0 $gen 2>/dev/null || { cat "$OUT/run.log"; exit 1; }; sleep 0.2; done
sleep 2
for w in $W; do "$PYSPY" record --pid "$w" --rate 1000 --duration 15 --format raw --nonblocking --output "$OUT/w-$w.txt" >/dev/null 2>&1 & done
wait $gen; wait
grep "step 2: delivered" "$OUT/run.log"
cat "$OUT"/w-*.txt | python3 -c '
import collections, sys
buckets = collections.Counter()
for line in sys.stdin:
    stack, n = line.rstrip().rsplit(" ", 1)
    if "Hub.dispatch" in stack:
        key = "hub dispatch: the sends (send_nowait and under)" if "send_nowait" in stack else "hub dispatch: the rest of the loop"
    elif "handle_arrived" in stack or "RedisFeed" in stack:
        key = "bus reader (read, parse)"
    elif "gunicorn" in stack and ("handle" in stack or "publish" in stack):
        key = "HTTP publish (gunicorn, the publish view, the Lua call)"
    elif any(k in stack for k in ("Presence", "RuntimeFlags", "Telemetry", "Ticker", "drain")):
        key = "periodic jobs"
    elif stack.count(";") <= 1:
        key = "event loop (gevent hub)"
    else:
        key = "other"
    buckets[key] += int(n)
total = sum(buckets.values())
print("| bucket | samples | share |\n|---|---:|---:|")
for key, n in buckets.most_common():
    print(f"| {key} | {n} | {100 * n / total:.1f} % |")
'
