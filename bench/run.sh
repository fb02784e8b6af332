#!/usr/bin/env bash
# The side-by-side benchmark: ChatGenius realtime, flask-sse and Nchan,
# measured by the same generator (ssebench/, extended from the original benchmark kit) in one run.
#
#   bench/run.sh                      # every scenario, every target (~25 min)
#   QUICK=1 bench/run.sh              # smaller sizes, shorter steps (a few minutes)
#   TARGETS="chatgenius" SCENARIOS="fanout" bench/run.sh
#
# Knobs: TARGETS [chatgenius nchan flask-sse; also floor]  SCENARIOS [idle fanout spread chat storm]
#        OUT_DIR [bench/results/<stamp>]  CG_WORKERS [2]  PUB_CONC [16]
#        IDLE_SIZES, IDLE_HOLD, FAN_N, FAN_RATES, FAN_DUR, SPREAD_N, SPREAD_DUR, STORM_N, STORM_BACK,
#        CHAT_N, CHAT_CHANNELS, CHAT_RATES, CHAT_DUR, CHAT_PUB_CONC
#        SERVER_CPUS, GEN_CPUS: CPU lists for taskset (e.g. 0 and 1): the target (with its Redis)
#        and the generator on cores of their own, so that the generator's load (a whole core at
#        100,000 deliveries/s) does not queue the server's work; unset: no pinning
# Output: OUT_DIR/<target>.jsonl (one JSON line per scenario run), <target>.log
# (generator progress and the exact ssebench command lines), machine.txt and
# summary.md (printed at the end). Every process is started by a peer's start.sh
# and stopped by the PID it recorded; everything is on 127.0.0.1.
set -uo pipefail
BENCH_DIR="$(cd "$(dirname "$0")" && pwd)"
[[ -n ${OUT_DIR:-} && ${OUT_DIR:0:1} != / ]] && OUT_DIR="$PWD/$OUT_DIR"  # relative to where it was called from
cd "$BENCH_DIR"
source "$BENCH_DIR/lib.sh"

QUICK=${QUICK:-0}
TARGETS=${TARGETS:-chatgenius nchan flask-sse}
SCENARIOS=${SCENARIOS:-idle fanout spread chat storm}
OUT_DIR=${OUT_DIR:-$BENCH_DIR/results/$(date +%Y%m%d-%H%M%S)$([[ $QUICK == 1 ]] && echo -quick)}
PUB_CONC=${PUB_CONC:-16}   # concurrent HTTP publish requests (same for every system)
SERVER_CPUS=${SERVER_CPUS:-}; GEN_CPUS=${GEN_CPUS:-}
ON_SERVER=(); ON_GEN=()
[[ -n $SERVER_CPUS ]] && ON_SERVER=(taskset -c "$SERVER_CPUS")
[[ -n $GEN_CPUS ]] && ON_GEN=(taskset -c "$GEN_CPUS")
if [[ $QUICK == 1 ]]; then
  IDLE_SIZES=${IDLE_SIZES:-1000 10000}; IDLE_HOLD=${IDLE_HOLD:-10s}
  FAN_DUR=${FAN_DUR:-5s}; FAN_REFINE=${FAN_REFINE:-0}
  SPREAD_N=${SPREAD_N:-5000}; SPREAD_DUR=${SPREAD_DUR:-10s}
  STORM_N=${STORM_N:-2000}
else
  # 20,000 in the performance bar; one generator process holds at most `ulimit -n` sockets, so a
  # size that does not fit is split over several generator processes (ssebench -procs)
  IDLE_SIZES=${IDLE_SIZES:-1000 5000 10000 20000}; IDLE_HOLD=${IDLE_HOLD:-20s}
  FAN_DUR=${FAN_DUR:-10s}; FAN_REFINE=${FAN_REFINE:-1}
  SPREAD_N=${SPREAD_N:-10000}; SPREAD_DUR=${SPREAD_DUR:-20s}
  STORM_N=${STORM_N:-2000}
fi
FAN_N=${FAN_N:-1000}
# 10 and 100 events/s are the bar's two points; then doubling until p99 > 1 s or a miss.
FAN_RATES=${FAN_RATES:-10,100,200,400,800,1600,3200,6400}
SPREAD_CHANNELS=${SPREAD_CHANNELS:-1000}; SPREAD_K=${SPREAD_K:-3}; SPREAD_RATE=${SPREAD_RATE:-1000}
STORM_BACK=${STORM_BACK:-100}
# chat: the shape of a chat workspace: many channels, few readers each (10 per channel),
# events to random channels from 8 concurrent publishers; CPU per publish is the headline.
CHAT_N=${CHAT_N:-5000}; CHAT_CHANNELS=${CHAT_CHANNELS:-500}; CHAT_RATES=${CHAT_RATES:-100,200,400,800,1600}
CHAT_DUR=${CHAT_DUR:-10s}; CHAT_PUB_CONC=${CHAT_PUB_CONC:-8}

mkdir -p "$OUT_DIR"
BIN=$BENCH_DIR/ssebench/ssebench
if [[ ! -x $BIN || -n $(find "$BENCH_DIR/ssebench" -name '*.go' -newer "$BIN") ]]; then
  (cd "$BENCH_DIR/ssebench" && go build -o ssebench .) || exit 1
fi
if [[ " $TARGETS " == *" flask-sse "* && ! -x $VENV/bin/gunicorn ]]; then
  python3 -m venv "$VENV" && "$VENV/bin/pip" install -q -r requirements-peers.txt || exit 1
fi
raise_nofile
fit=$(( $(ulimit -n) - 1000 ))   # sockets one generator process may hold, with room to spare
if (( fit < 1000 )); then echo "ulimit -n $(ulimit -n) is too low for the idle scenario (at least 2000)" >&2; exit 1; fi
{ echo "# $(date -u +%FT%TZ) QUICK=$QUICK TARGETS=$TARGETS SCENARIOS=$SCENARIOS CG_WORKERS=${CG_WORKERS:-2}"
  echo "nproc: $(nproc)"; free -h | sed -n 2p; uname -r; grep -m1 'model name' /proc/cpuinfo
  go version; nginx -v 2>&1; redis-server --version; python3 --version; ../.venv/bin/python --version
  dpkg-query -W nginx libnginx-mod-nchan redis-server golang-go 2>/dev/null
  echo "ulimit -n $(ulimit -n)"; echo "loadavg at start: $(cat /proc/loadavg)"
  echo "pinning: server CPUs ${SERVER_CPUS:-any}, generator CPUs ${GEN_CPUS:-any}"
  echo "## ours:"; ../.venv/bin/pip freeze 2>/dev/null | grep -Ei '^(flask|gevent|gunicorn|redis|hiredis|greenlet)='
  echo "## peers venv:"; "$VENV/bin/pip" freeze 2>/dev/null | grep -Ei '^(flask|flask-sse|gevent|gunicorn|redis|hiredis)='
  git -C .. rev-parse --short HEAD 2>/dev/null; git -C .. status --short -- chatgenius gunicorn.conf.py wsgi.py 2>/dev/null
  echo "## per-event modules (make compiled; CG_ROOT: that checkout's):"
  (cd "${CG_ROOT:-..}" && "$BENCH_DIR/../.venv/bin/python" -m chatgenius.compiled status 2>&1 | sort | uniq -c -w9 | sed 's/ chatgenius.*//')
} > "$OUT_DIR/machine.txt"
echo "results -> $OUT_DIR"

PEER_DIR=
start_target() { "$PEER_DIR/stop.sh" >>"$LOG" 2>&1; sleep 0.5
  "${ON_SERVER[@]}" "$PEER_DIR/start.sh" >>"$LOG" 2>&1 || { echo "start of $T failed, see $LOG" >&2; return 1; }
  SUB_HEADERS=(); PUB_HEADERS=(); STATS_HOOK=''; CHAN='bench{run}c{c}'; SPREAD_SUB_URL=''; SUB_HEADER_FILE=''; source "$PEER_DIR/target.env"; sleep 1; }
stop_target() { [[ -n $PEER_DIR ]] && "$PEER_DIR/stop.sh" >>"$LOG" 2>&1; true; }
trap stop_target EXIT

bench() { # bench SCENARIO_LABEL SUB_URL [extra ssebench flags...]
  local label=$1 url=$2; shift 2
  local args=(run -label "$TARGET_NAME" -scenario "$label" -sub-url "$url" -chan "$CHAN" -payload "$PAYLOAD"
              -ready "${READY:-prime}" -server-pids "$(cat "$SERVER_PIDFILE")" -out "$OUT"
              -pub http -pub-url "$PUB_URL" -pub-conc "$PUB_CONC")
  [[ -n ${REDIS:-} ]] && args+=(-redis-stats "$REDIS")
  [[ -n ${SUB_HEADER_FILE:-} ]] && args+=(-H-rotate "$SUB_HEADER_FILE")
  local h; for h in "${SUB_HEADERS[@]}"; do args+=(-H "$h"); done
  for h in "${PUB_HEADERS[@]}"; do args+=(-pub-H "$h"); done
  echo "+ ssebench ${args[*]} $*" | sed 's/Bearer [A-Za-z0-9._-]*/Bearer <token>/g' >>"$LOG"
  local b0 t0; b0=$(busy_s); t0=$(date +%s.%N)
  [[ -n ${STATS_HOOK:-} ]] && "$STATS_HOOK" before "$label"
  "${ON_GEN[@]}" "$BIN" "${args[@]}" "$@" 2>>"$LOG" | python3 "$BENCH_DIR/summarize.py" --line
  [[ -n ${STATS_HOOK:-} ]] && "$STATS_HOOK" after "$label"
  # whole-machine CPU during the run, to tell our load from other tenants' (see summary)
  printf '%s\t%s\t%.1f\t%.1f\t%s\n' "$TARGET_NAME" "$label" "$(echo "$(date +%s.%N) - $t0" | bc)" \
    "$(echo "$(busy_s) - $b0" | bc)" "$(cut -d' ' -f1-3 /proc/loadavg)" >> "$OUT_DIR/machine-cpu.tsv"
}

# Scenario by scenario, each system in turn, so that what else the machine was doing
# at the time weighs on the three systems' numbers alike.
for sc in $SCENARIOS; do
  for T in $TARGETS; do
    PEER_DIR=$BENCH_DIR/peers/$T
    LOG=$OUT_DIR/$T.log; OUT=$OUT_DIR/$T.jsonl
    case $sc in
      idle)
        for n in $IDLE_SIZES; do
          start_target || continue
          bench "idle-$n" "$SUB_URL" -n "$n" -procs $(( (n + fit - 1) / fit )) -hold "$IDLE_HOLD" \
            -conn-conc 200 -connect-timeout 240s -max-time 6m
        done ;;
      fanout)
        start_target || continue
        before=$( [[ -f $OUT ]] && wc -l < "$OUT" || echo 0)
        bench fanout "$SUB_URL" -n "$FAN_N" -rates "$FAN_RATES" -duration "$FAN_DUR" -stop-p99 1s -stop-on-miss -max-time 6m
        if [[ $FAN_REFINE == 1 ]]; then
          # one pass between the last passing and the first failing step (1.25/1.5/1.75 x)
          refine=$(tail -n +"$((before + 1))" "$OUT" | python3 -c '
import json, sys
d = [json.loads(l) for l in sys.stdin if "\"fanout\"" in l][-1]
ok = d.get("max_ok_rate") or 0
bad = [s["rate"] for s in d["steps"] if not s["ok"]]
if ok and bad and bad[0] > ok:
    print(",".join("%g" % round(ok * f) for f in (1.25, 1.5, 1.75) if round(ok * f) < bad[0]))
')
          if [[ -n $refine ]]; then
            start_target || continue
            bench fanout-refine "$SUB_URL" -n "$FAN_N" -rates "$refine" -duration "$FAN_DUR" -stop-p99 1s -stop-on-miss -max-time 4m
          fi
        fi ;;
      spread)
        start_target || continue
        if [[ -z $SPREAD_SUB_URL ]]; then echo "$T spread: n/a (one channel per stream)"; stop_target; continue; fi
        bench spread "$SPREAD_SUB_URL" -n "$SPREAD_N" -channels "$SPREAD_CHANNELS" -chans-per-sub "$SPREAD_K" \
          -pub-random -rates "$SPREAD_RATE" -duration "$SPREAD_DUR" -conn-conc 200 -connect-timeout 150s -max-time 5m ;;
      chat)
        start_target || continue
        PUB_CONC=$CHAT_PUB_CONC bench chat "$SUB_URL" -n "$CHAT_N" -channels "$CHAT_CHANNELS" -pub-random \
          -rates "$CHAT_RATES" -duration "$CHAT_DUR" -conn-conc 200 -connect-timeout 150s -max-time 6m ;;
      storm)
        start_target || continue
        bench storm "$SUB_URL" -n "$STORM_N" -storm-back "$STORM_BACK" -storm-max 60s -conn-conc 200 -max-time 3m ;;
      *) echo "unknown scenario $sc" >&2 ;;
    esac
    stop_target; PEER_DIR=
  done
done
python3 "$BENCH_DIR/summarize.py" "$OUT_DIR"/*.jsonl | tee "$OUT_DIR/summary.md"
