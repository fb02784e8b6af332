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
curl -sf -XPOST "http://127.0.0.1:$CG_PORT/dev/token" -H 'content-type: application/json' \
  -d '{"sub":"bench","channels":["bench:*"],"permissions":["publish:events"],"ttl":86400}' \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])' > "$D/token"
echo "chatgenius up: gunicorn master pid $(cat "$D/gunicorn.pid"), redis pid $(cat "$D/redis.pid") port $RPORT"
