# Helpers for the peer start/stop scripts and run.sh (source me); from the original benchmark kit's lib.sh.
# Everything binds to 127.0.0.1; processes are stopped only by the PIDs we recorded.
BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
RUN_DIR="${RUN_DIR:-$BENCH_DIR/run}"
# Ports differ from the original kit's (16379, 18100, 18200) so both can run on one box.
REDIS_PORT="${REDIS_PORT:-16479}"
NCHAN_PORT="${NCHAN_PORT:-18110}"
export FLASK_SSE_PORT="${FLASK_SSE_PORT:-18210}"
CG_PORT="${CG_PORT:-18400}"
FLOOR_PORT="${FLOOR_PORT:-18500}"
REDIS_ADDR="127.0.0.1:$REDIS_PORT"
VENV="${VENV:-$BENCH_DIR/.venv}"
mkdir -p "$RUN_DIR"

raise_nofile() { ulimit -n "$(ulimit -Hn)" 2>/dev/null || ulimit -n 20000 2>/dev/null || true; }

# wait_port PORT [SECONDS]
wait_port() {
  local port=$1 t=${2:-20} i=0
  while (( i < t * 10 )); do
    (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null && { exec 3>&- 2>/dev/null; return 0; }
    sleep 0.1; i=$((i + 1))
  done
  echo "port $port not listening after ${t}s" >&2; return 1
}

# descendants PID: every descendant PID of PID (children first found via ps --ppid)
descendants() {
  local c
  for c in $(ps -o pid= --ppid "$1" 2>/dev/null); do echo "$c"; descendants "$c"; done
}

# kill_pidfile FILE [SIGNAL]: signal the recorded PID, wait up to 10 s for it and the
# descendants it had (workers), then KILL whichever of those PIDs are still alive.
kill_pidfile() {
  local f=$1 sig=${2:-TERM} pid kids p i=0
  [[ -s $f ]] || return 0
  pid=$(cat "$f")
  if [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null; then
    kids=$(descendants "$pid")
    kill -"$sig" "$pid"
    while (( i < 100 )); do
      alive=0
      for p in $pid $kids; do kill -0 "$p" 2>/dev/null && alive=1; done
      (( alive )) || break
      sleep 0.1; i=$((i + 1))
    done
    for p in $pid $kids; do kill -0 "$p" 2>/dev/null && kill -KILL "$p"; done
  fi
  rm -f "$f"
}

# port_free PORT: fail if something already listens on 127.0.0.1:PORT
port_free() {
  if (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null; then
    echo "port $1 is already in use (a previous server still running?)" >&2; return 1
  fi
}

redis_start() {
  raise_nofile
  if [[ -s $RUN_DIR/redis.pid ]] && kill -0 "$(cat "$RUN_DIR/redis.pid")" 2>/dev/null; then return 0; fi
  # the prescribed command line, plus bind/pidfile/log and maxclients (the default
  # 10000 is below what flask-sse needs for 10k subscribers: one Redis connection each)
  redis-server --port "$REDIS_PORT" --save '' --appendonly no --daemonize yes \
    --bind 127.0.0.1 --pidfile "$RUN_DIR/redis.pid" --logfile "$RUN_DIR/redis.log" \
    --maxclients 19000
  wait_port "$REDIS_PORT" 10
  for _ in $(seq 50); do [[ -s $RUN_DIR/redis.pid ]] && break; sleep 0.1; done
}
redis_stop() { kill_pidfile "$RUN_DIR/redis.pid"; }

# busy_s: CPU seconds the whole machine has spent busy since boot (all cores; /proc/stat)
busy_s() { awk '/^cpu /{printf "%.2f\n", ($2+$3+$4+$7+$8+$9)/100; exit}' /proc/stat; }

# free_port: print a free loopback TCP port (the kernel picks it)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# private_redis DIR: a redis-server of one target's own on a free loopback port, nothing kept on
# disk; prints the port (also in DIR/redis.port; PID in DIR/redis.pid)
private_redis() {
  local d=$1 port
  port=$(free_port)
  echo "$port" > "$d/redis.port"
  redis-server --port "$port" --save '' --appendonly no --daemonize yes \
    --bind 127.0.0.1 --pidfile "$d/redis.pid" --logfile "$d/redis.log" --maxclients 10000
  wait_port "$port" 10
  for _ in $(seq 50); do [[ -s $d/redis.pid ]] && break; sleep 0.1; done
  echo "$port"
}

# cg_gunicorn_start DIR NAME=VALUE...: start ChatGenius realtime under gunicorn (gevent,
# CG_WORKERS workers, default 2) on 127.0.0.1:$CG_PORT with the given Redis settings
# (REDIS_URL=... or REDIS_CLUSTER_NODES=...), PID and log in DIR. CG_ROOT runs the service
# from another checkout (a what-if experiment) with this venv; the caller is left in that
# checkout's directory, as gunicorn.conf.py and wsgi.py are found there.
cg_gunicorn_start() {
  local d=$1 root gunicorn
  shift
  root="$(cd "$BENCH_DIR/.." && pwd)"
  gunicorn="$root/.venv/bin/gunicorn"
  [[ -n ${CG_ROOT:-} ]] && root=$CG_ROOT
  cd "$root"
  # Limits that exist to protect production from abuse are opened wide: the benchmark
  # is one user holding thousands of streams and publishing thousands of events/s.
  # (MAX_CONNECTIONS_PER_USER: 10000 is the highest value config.py accepts.)
  env "$@" AUTH_MODE=dev BIND="127.0.0.1:$CG_PORT" \
    WEB_CONCURRENCY="${CG_WORKERS:-2}" LOG_LEVEL="${CG_LOG_LEVEL:-WARNING}" \
    MAX_CONNECTIONS_PER_USER=10000 RATE_LIMIT_CONNECT='1000000/minute' \
    RATE_LIMIT_PUBLISH='100000000/minute' RATE_LIMIT_POLL='1000000/minute' \
    setsid "$gunicorn" -c gunicorn.conf.py --pid "$d/gunicorn.pid" wsgi:app \
    >>"$d/gunicorn.log" 2>&1 < /dev/null &
  wait_port "$CG_PORT" 30 || { tail -20 "$d/gunicorn.log" >&2; exit 1; }
  for _ in $(seq 50); do [[ -s $d/gunicorn.pid ]] && break; sleep 0.1; done
}

# cg_mint SUB: a dev token for SUB (reads and publishes bench:*) from the service on $CG_PORT
cg_mint() {
  curl -sf -XPOST "http://127.0.0.1:$CG_PORT/dev/token" -H 'content-type: application/json' \
    -d '{"sub":"'"$1"'","channels":["bench:*"],"permissions":["publish:events"],"ttl":86400}' \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])'
}

# cg_mint_tokens DIR: the publisher's token in DIR/token and 20 users' Authorization headers
# in DIR/sub-headers. Streams are spread over the 20 users (ssebench -H-rotate), so 20,000
# idle streams are 20 users × 1,000, and the per-user connection limit stays on.
cg_mint_tokens() {
  local d=$1 u
  cg_mint bench > "$d/token"
  : > "$d/sub-headers"
  for u in $(seq 0 19); do echo "Authorization: Bearer $(cg_mint "bench$u")" >> "$d/sub-headers"; done
}
