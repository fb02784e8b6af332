#!/usr/bin/env bash
# Start ChatGenius realtime for the benchmark: a private redis-server on a free
# loopback port and gunicorn (gevent, CG_WORKERS workers, default 2) on
# 127.0.0.1:$CG_PORT (default 18400); record both PIDs and mint a dev token.
set -euo pipefail
source "$(dirname "$0")/../../lib.sh"
ROOT="$(cd "$BENCH_DIR/.." && pwd)"
GUNICORN="$ROOT/.venv/bin/gunicorn"
# CG_ROOT: run the service from another checkout (a what-if experiment) with this venv.
[[ -n ${CG_ROOT:-} ]] && ROOT=$CG_ROOT
D="$RUN_DIR/chatgenius"; mkdir -p "$D"
raise_nofile
port_free "$CG_PORT"
RPORT=$(free_port)
echo "$RPORT" > "$D/redis.port"
redis-server --port "$RPORT" --save '' --appendonly no --daemonize yes \
  --bind 127.0.0.1 --pidfile "$D/redis.pid" --logfile "$D/redis.log" --maxclients 10000
wait_port "$RPORT" 10
for _ in $(seq 50); do [[ -s $D/redis.pid ]] && break; sleep 0.1; done
cd "$ROOT"
# Limits that exist to protect production from abuse are opened wide: the benchmark
# is one user holding thousands of streams and publishing thousands of events/s.
# (MAX_CONNECTIONS_PER_USER: 10000 is the highest value config.py accepts.)
REDIS_URL="redis://127.0.0.1:$RPORT/0" AUTH_MODE=dev BIND="127.0.0.1:$CG_PORT" \
  WEB_CONCURRENCY="${CG_WORKERS:-2}" LOG_LEVEL=WARNING \
  MAX_CONNECTIONS_PER_USER=10000 RATE_LIMIT_CONNECT='1000000/minute' \
  RATE_LIMIT_PUBLISH='100000000/minute' RATE_LIMIT_POLL='1000000/minute' \
  setsid "$GUNICORN" -c gunicorn.conf.py --pid "$D/gunicorn.pid" wsgi:app \
  >>"$D/gunicorn.log" 2>&1 < /dev/null &
wait_port "$CG_PORT" 30 || { tail -20 "$D/gunicorn.log" >&2; exit 1; }
for _ in $(seq 50); do [[ -s $D/gunicorn.pid ]] && break; sleep 0.1; done
mint() { # mint SUB -> a dev token for SUB (reads and publishes bench:*)
  curl -sf -XPOST "http://127.0.0.1:$CG_PORT/dev/token" -H 'content-type: application/json' \
    -d '{"sub":"'"$1"'","channels":["bench:*"],"permissions":["publish:events"],"ttl":86400}' \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])'
}
mint bench > "$D/token"
# Streams are spread over 8 users (ssebench -H-rotate): the per-user connection limit
# (at most 10000) stays on, and 20k streams stay possible.
: > "$D/sub-headers"
for u in 0 1 2 3 4 5 6 7; do echo "Authorization: Bearer $(mint "bench$u")" >> "$D/sub-headers"; done
echo "chatgenius up: gunicorn master pid $(cat "$D/gunicorn.pid"), redis pid $(cat "$D/redis.pid") port $RPORT"
