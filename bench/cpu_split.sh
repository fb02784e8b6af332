#!/usr/bin/env bash
# Where a target's server CPU goes under the chat-shaped load (or, with SCENARIO=fanout, 1,000
# streams on one channel), counted by the CPU (perf), not by a sampler of Python stacks: user space
# by library (the interpreter, libc, extensions) and the kernel by system call, in µs per publish
# (per delivery for fanout), for ChatGenius or Nchan alike.
#
#   bench/cpu_split.sh [TARGET] [RATE] [SECONDS]     # default: chatgenius 400 ev/s for 20 s
#   SCENARIO=fanout bench/cpu_split.sh nchan 10 20   # 1,000 streams on one channel, in µs per delivery
#   CHAT_N=500 bench/cpu_split.sh chatgenius 800 20  # chat with 500 streams: one reader per channel
#
# Why beside profile_chat.sh: py-spy counts a sample wherever a process is runnable, so the
# time a woken worker waits for a core (two cores here, shared with Redis and the generator)
# lands on gevent's event loop. perf's cpu-clock samples count only time on a CPU.
# Needs `perf` (Debian: linux-perf) and kernel.perf_event_paranoid <= 1 (or root).
# Writes OUT_DIR (default bench/results/cpu-<target>-<stamp>/): run.md (the generator's table), cpu.md (the split),
# perf-top.txt (perf's shares by library and the top kernel and user functions), perf.data.
set -uo pipefail
BENCH_DIR="$(cd "$(dirname "$0")" && pwd)"
OUT_DIR=${OUT_DIR:+$(realpath -m "$OUT_DIR")}  # given from where the script was run
cd "$BENCH_DIR"
source "$BENCH_DIR/lib.sh"
T=${1:-chatgenius}; RATE=${2:-400}; SECS=${3:-20}; SCENARIO=${SCENARIO:-chat}
[[ $SCENARIO == chat || $SCENARIO == fanout ]] || { echo "SCENARIO: chat or fanout" >&2; exit 1; }
OUT=${OUT_DIR:-$BENCH_DIR/results/cpu-$T-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"
knobs="SCENARIO=$SCENARIO"; [[ $SCENARIO == chat ]] && knobs+=" CHAT_N=${CHAT_N:-5000}"
echo "$knobs bench/cpu_split.sh $T $RATE $SECS  # $(date -u +%FT%TZ), $(git -C .. rev-parse --short HEAD 2>/dev/null), $(nproc) CPUs" > "$OUT/command.txt"
command -v perf >/dev/null || { echo "perf missing (apt-get install linux-perf)" >&2; exit 1; }
BIN=$BENCH_DIR/ssebench/ssebench
[[ -x $BIN && $BIN -nt $BENCH_DIR/ssebench/main.go ]] || (cd ssebench && go build -o ssebench .) || exit 1
raise_nofile
PEER=$BENCH_DIR/peers/$T
[[ -x $PEER/start.sh ]] || { echo "no peer $T" >&2; exit 1; }
"$PEER/stop.sh" >/dev/null 2>&1; "$PEER/start.sh" > "$OUT/server.log" 2>&1 || { cat "$OUT/server.log"; exit 1; }
trap '"$PEER/stop.sh" >/dev/null 2>&1' EXIT
SUB_HEADERS=(); PUB_HEADERS=(); SUB_HEADER_FILE=''; CHAN='bench{run}c{c}'
source "$PEER/target.env"
master=$(cat "$SERVER_PIDFILE")
pids=$(echo "$master" $(ps -o pid= --ppid "$master") | tr -s ' ' ',')
args=(run -label "$TARGET_NAME" -scenario "$SCENARIO" -sub-url "$SUB_URL" -chan "$CHAN" -payload "$PAYLOAD"
      -server-pids "$master" -pub http -pub-url "$PUB_URL" -rates "$RATE,$RATE" -duration "${SECS}s"
      -conn-conc 200 -connect-timeout 150s -max-time 5m)
if [[ $SCENARIO == chat ]]; then
  args+=(-pub-conc 8 -n "${CHAT_N:-5000}" -channels 500 -pub-random); UNIT=publish; TABLE='Chat-shaped'
else
  args+=(-n 1000); UNIT=delivery; TABLE='Fan-out'
fi
[[ -n ${SUB_HEADER_FILE:-} ]] && args+=(-H-rotate "$SUB_HEADER_FILE")
for h in "${SUB_HEADERS[@]}"; do args+=(-H "$h"); done
for h in "${PUB_HEADERS[@]}"; do args+=(-pub-H "$h"); done
# Subscribers hold for both steps: a warm-up step, then the recorded one.
"$BIN" "${args[@]}" > "$OUT/ssebench.jsonl" 2> "$OUT/ssebench.log" &
gen=$!
until grep -q "step 2: rate" "$OUT/ssebench.log" 2>/dev/null; do sleep 0.2; kill -0 $gen 2>/dev/null || break; done
sleep 2
perf record -F 999 -g -o "$OUT/perf.data" -p "$pids" -- sleep $((SECS - 4)) > "$OUT/perf.log" 2>&1
wait $gen
python3 "$BENCH_DIR/summarize.py" "$OUT/ssebench.jsonl" | grep -A5 "^### $TABLE" > "$OUT/run.md"
per=$(python3 -c '
import json, sys
d = json.loads(open(sys.argv[1]).readline())
st = d["steps"][-1]
print(st["server_cpu_s"] * 1e6 / (st["publish_rate_achieved"] * st["publish_s"] if sys.argv[2] == "publish"
                                  else st["deliveries"]))' "$OUT/ssebench.jsonl" "$UNIT")
{
  perf report -i "$OUT/perf.data" --no-children --sort dso --stdio -g none 2>/dev/null | grep -v '^#' | sed 's/^/dso /'
  perf report -i "$OUT/perf.data" --children --sort sym --stdio -g none 2>/dev/null | grep -v '^#' | sed 's/^/sym /'
} > "$OUT/perf.txt"
{ grep '^dso' "$OUT/perf.txt"; grep '^sym' "$OUT/perf.txt" | head -150; } > "$OUT/perf-top.txt"  # small enough to keep
python3 - "$OUT/perf.txt" "$per" "$T" "$RATE" "$SCENARIO" "$UNIT" <<'EOF' | tee "$OUT/cpu.md"
import re, sys
lines, per, target, rate = open(sys.argv[1]).read().splitlines(), float(sys.argv[2]), sys.argv[3], sys.argv[4]
load = {"chat": "chat-shaped load", "fanout": "1,000 streams on one channel"}[sys.argv[5]]
unit = sys.argv[6]
# The kernel functions a system call's work runs under (perf's inclusive share): the sends are
# sendto() for a Python socket, writev()/write() for nginx; reads likewise.
CALLS = {"__sys_sendto": "send (sendto)", "do_writev": "send (writev)", "ksys_write": "write",
         "__sys_recvfrom": "receive (recvfrom)", "ksys_read": "read", "do_epoll_wait": "epoll_wait",
         "do_epoll_ctl": "epoll_ctl", "__x64_sys_getpid": "getpid"}
dso, syscalls = {}, {}
for line in lines:
    m = re.match(r"dso\s+([\d.]+)%\s+(\S+)", line)
    if m:
        dso[m.group(2)] = float(m.group(1))
    m = re.match(r"sym\s+([\d.]+)%\s+[\d.]+%\s+\[k\] (\w+)\s*$", line)
    if m and m.group(2) in CALLS:
        syscalls[CALLS[m.group(2)]] = float(m.group(1))
kernel = dso.pop("[kernel.kallsyms]", 0.0)
def row(name, share):
    return f"| {name} | {share:.1f} % | {share * per / 100:.{0 if per >= 100 else 2}f} |"
out = [f"{target}, {load} at {rate} ev/s: {per:.{0 if per >= 100 else 2}f} µs of server CPU per {unit} (the recorded step)", "",
       f"| where (perf cpu-clock samples of the server processes) | share | µs per {unit} |", "|---|---:|---:|"]
groups = dict.fromkeys(["the interpreter (libpython)", "Python extension modules (gevent, greenlet, hiredis...)",
                        "nginx and the Nchan module", "libc", "other user space"], 0.0)
for name, share in dso.items():
    if "libpython" in name:
        groups["the interpreter (libpython)"] += share
    elif ".cpython-" in name:
        groups["Python extension modules (gevent, greenlet, hiredis...)"] += share
    elif name == "nginx" or name.startswith("ngx_"):
        groups["nginx and the Nchan module"] += share
    elif name.startswith("libc.so"):
        groups["libc"] += share
    else:
        groups["other user space"] += share
out += [row("user: " + k, v) for k, v in groups.items() if v]
out.append(row("kernel, in all", kernel))
named = 0.0
for name, share in sorted(syscalls.items(), key=lambda kv: -kv[1]):
    if share >= 0.5:
        out.append(row(f"kernel: {name}", share))
        named += share
out.append(row("kernel: other (smaller system calls, interrupts, scheduling outside them)", max(0.0, kernel - named)))
print("\n".join(out))
EOF
echo "-> $OUT"
