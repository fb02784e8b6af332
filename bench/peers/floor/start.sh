#!/usr/bin/env bash
# Start the floor server (server.py: CPython + gevent + Redis doing only what any server of our
# design must do) with FLOOR_WORKERS workers (default 2) on 127.0.0.1:$FLOOR_PORT and a private
# redis-server; record both PIDs.
set -euo pipefail
source "$(dirname "$0")/../../lib.sh"
D="$RUN_DIR/floor"; mkdir -p "$D"
raise_nofile
port_free "$FLOOR_PORT"
RPORT=$(private_redis "$D")
setsid "$BENCH_DIR/../.venv/bin/python" "$(dirname "$0")/server.py" "$FLOOR_PORT" "$RPORT" \
  "${FLOOR_WORKERS:-2}" "$D/server.pid" >>"$D/server.log" 2>&1 < /dev/null &
wait_port "$FLOOR_PORT" 20 || { tail -20 "$D/server.log" >&2; exit 1; }
for _ in $(seq 50); do [[ -s $D/server.pid ]] && break; sleep 0.1; done
echo "floor up: master pid $(cat "$D/server.pid"), redis pid $(cat "$D/redis.pid") port $RPORT"
