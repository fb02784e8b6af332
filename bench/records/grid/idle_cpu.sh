#!/usr/bin/env bash
# usage: idle_cpu.sh [SECONDS]: CPU the gunicorn workers of the benchmark's ChatGenius use with no
# stream open and no event (their periodic jobs only), from /proc/<pid>/schedstat (ns) over SECONDS
# (default 40). CG_ROOT picks the checkout, as for bench/run.sh. Added in the eighth session.
S=${1:-40}
cd "$(git rev-parse --show-toplevel)/bench"; source lib.sh
peers/chatgenius/stop.sh >/dev/null 2>&1; sleep 0.5
peers/chatgenius/start.sh >/dev/null 2>&1 || { echo start failed; exit 1; }
trap 'peers/chatgenius/stop.sh >/dev/null 2>&1' EXIT
P=$(cat run/chatgenius/gunicorn.pid); W=$(ps -o pid= --ppid "$P" | tr -d ' ')
sleep 5
ns() { local t=0 p; for p in $W; do t=$((t + $(cut -d' ' -f1 "/proc/$p/schedstat"))); done; echo $t; }
a=$(ns); sleep "$S"; b=$(ns)
echo "$(git -C "${CG_ROOT:-..}" rev-parse --short HEAD) workers with no stream: $(( (b - a) / (S * 1000) )) us CPU/s"
