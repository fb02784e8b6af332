#!/usr/bin/env bash
# Where a publish goes: py-spy over our gunicorn workers under the chat-shaped load
# (5,000 streams on 500 channels, events to random channels, 8 HTTP publishers).
#
#   bench/profile_chat.sh [RATE] [SECONDS]      # default 400 ev/s for 20 s
#   PROFILER=strace bench/profile_chat.sh 400 20 # `strace -c` of each worker instead: system calls counted
#
# Writes bench/results/profile-<stamp>/{workers.txt,stages.md}: py-spy's collapsed
# stacks of every worker (idle frames dropped) and the per-stage breakdown that
# bench/stages.py makes of them (docs/PERFORMANCE.md, "Where a publish goes").
set -uo pipefail
BENCH_DIR="$(cd "$(dirname "$0")" && pwd)"
OUT_DIR=${OUT_DIR:+$(realpath -m "$OUT_DIR")}  # given from where the script was run
cd "$BENCH_DIR"
source "$BENCH_DIR/lib.sh"
RATE=${1:-400}; SECS=${2:-20}
OUT=${OUT_DIR:-$BENCH_DIR/results/profile-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"
PROFILER=${PROFILER:-py-spy}
PYSPY=${PYSPY:-$BENCH_DIR/../.venv/bin/py-spy}
if [[ $PROFILER == strace ]]; then
  command -v strace >/dev/null || { echo "strace missing" >&2; exit 1; }
else
  [[ -x $PYSPY ]] || { echo "py-spy missing: .venv/bin/pip install py-spy" >&2; exit 1; }
fi
BIN=$BENCH_DIR/ssebench/ssebench
[[ -x $BIN && $BIN -nt $BENCH_DIR/ssebench/main.go ]] || (cd ssebench && go build -o ssebench .) || exit 1
raise_nofile
PEER=$BENCH_DIR/peers/chatgenius
"$PEER/stop.sh" >/dev/null 2>&1; "$PEER/start.sh" > "$OUT/server.log" 2>&1 || { cat "$OUT/server.log"; exit 1; }
trap '"$PEER/stop.sh" >/dev/null 2>&1' EXIT
source "$PEER/target.env"
workers=$(ps -o pid= --ppid "$(cat "$SERVER_PIDFILE")" | tr -d ' ' | paste -sd,)
# Subscribers hold for the publish steps: a short warm-up step, then the profiled one.
"$BIN" run -label chatgenius -scenario chat -sub-url "$SUB_URL" -chan "$CHAN" -payload "$PAYLOAD" \
  -server-pids "$(cat "$SERVER_PIDFILE")" -pub http -pub-url "$PUB_URL" -pub-conc 8 \
  -H-rotate "$SUB_HEADER_FILE" -pub-H "Authorization: Bearer $TOKEN" -pub-H "Content-Type: application/json" \
  -n 5000 -channels 500 -pub-random -rates "$RATE,$RATE" -duration "${SECS}s" -conn-conc 200 -connect-timeout 150s \
  -max-time 5m > "$OUT/ssebench.jsonl" 2> "$OUT/ssebench.log" &
gen=$!
# wait for the first (warm-up) step to start, then profile during the second
until grep -q "step 2: rate" "$OUT/ssebench.log" 2>/dev/null; do sleep 0.2; kill -0 $gen 2>/dev/null || break; done
sleep 2
pids=(${workers//,/ })
for p in "${pids[@]}"; do
  if [[ $PROFILER == strace ]]; then  # the counts are what to read: strace slows every call it counts
    timeout $((SECS - 4)) strace -c -f -p "$p" -o "$OUT/strace-$p.txt" &
  else
    "$PYSPY" record --pid "$p" --rate 250 --duration $((SECS - 4)) --format raw --nonblocking \
      --output "$OUT/worker-$p.txt" >/dev/null 2>&1 &
  fi
done
wait $gen
wait
python3 "$BENCH_DIR/summarize.py" "$OUT/ssebench.jsonl" | grep -A8 'Chat-shaped' > "$OUT/run.md"
if [[ $PROFILER == strace ]]; then
  grep -h -E 'calls|total|sendto|recvfrom|epoll_wait|epoll_ctl|getpid' "$OUT"/strace-*.txt
  echo "-> $OUT"
  exit 0
fi
cat "$OUT"/worker-*.txt > "$OUT/workers.txt"
# µs per publish of the profiled (second) step, for the per-stage column
per=$(python3 -c '
import json, sys
d = json.loads(open(sys.argv[1]).readline())
st = d["steps"][-1]
print(st["server_cpu_s"] * 1e6 / (st["publish_rate_achieved"] * st["publish_s"]))' "$OUT/ssebench.jsonl")
python3 "$BENCH_DIR/stages.py" "$OUT/workers.txt" "$per" | tee "$OUT/stages.md"
echo "-> $OUT"
