#!/usr/bin/env bash
# idle 1,000 streams: workers' CPU/s from schedstat, strace -c and py-spy
N=${1:-1000}; OUT=$(realpath -m "${2:-idleprof}"); mkdir -p $OUT
cd "$(git rev-parse --show-toplevel)/bench"; source lib.sh; raise_nofile
peers/chatgenius/stop.sh >/dev/null 2>&1; sleep 0.5
peers/chatgenius/start.sh > $OUT/server.log 2>&1 || { echo start failed; exit 1; }
trap 'peers/chatgenius/stop.sh >/dev/null 2>&1' EXIT
source peers/chatgenius/target.env
P=$(cat "$SERVER_PIDFILE"); W=$(ps -o pid= --ppid "$P" | tr -d ' ')
ssebench/ssebench run -label chatgenius -scenario idle -sub-url "$SUB_URL" -chan "$CHAN" -payload "$PAYLOAD" \
  -server-pids "$P" -H-rotate "$SUB_HEADER_FILE" -n $N -hold 75s -conn-conc 200 -connect-timeout 100s -max-time 3m > $OUT/gen.jsonl 2>$OUT/gen.log &
g=$!
sleep 20
ns() { local t=0 p; for p in $W; do t=$((t + $(cut -d' ' -f1 "/proc/$p/schedstat"))); done; echo $t; }
a=$(ns); sleep 20; b=$(ns)
echo "workers with $N idle streams: $(( (b - a) / 20000 )) us CPU/s"
for p in $W; do timeout 20 strace -c -f -p $p -o $OUT/strace-$p.txt & done
for p in $W; do ../.venv/bin/py-spy record --pid $p --rate 500 --duration 20 --format raw --nonblocking --idle --output $OUT/spy-$p.txt >/dev/null 2>&1 & done
wait
