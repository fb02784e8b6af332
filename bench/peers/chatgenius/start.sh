#!/usr/bin/env bash
# Start ChatGenius realtime for the benchmark: a private redis-server on a free
# loopback port and gunicorn (gevent, CG_WORKERS workers, default 2) on
# 127.0.0.1:$CG_PORT (default 18400); record both PIDs and mint a dev token.
set -euo pipefail
source "$(dirname "$0")/../../lib.sh"
D="$RUN_DIR/chatgenius"; mkdir -p "$D"
raise_nofile
port_free "$CG_PORT"
RPORT=$(private_redis "$D")
cg_gunicorn_start "$D" REDIS_URL="redis://127.0.0.1:$RPORT/0"
cg_mint_tokens "$D"
echo "chatgenius up: gunicorn master pid $(cat "$D/gunicorn.pid"), redis pid $(cat "$D/redis.pid") port $RPORT"
