#!/usr/bin/env bash
# Start ChatGenius realtime on a private Redis Cluster for the benchmark: six redis-server
# nodes on free loopback ports (three masters, one replica each), then gunicorn as in
# ../chatgenius/start.sh but with REDIS_CLUSTER_NODES instead of REDIS_URL.
set -euo pipefail
source "$(dirname "$0")/../../lib.sh"
ROOT="$(cd "$BENCH_DIR/.." && pwd)"
GUNICORN="$ROOT/.venv/bin/gunicorn"
[[ -n ${CG_ROOT:-} ]] && ROOT=$CG_ROOT
D="$RUN_DIR/chatgenius-cluster"; mkdir -p "$D"; rm -f "$D"/node-*.pid "$D"/nodes-*.conf "$D"/*.rdb "$D"/gunicorn.log
raise_nofile
port_free "$CG_PORT"
ports=()
for i in 0 1 2 3 4 5; do
  p=$(free_port); bus=$(free_port)
  redis-server --port "$p" --cluster-enabled yes --cluster-port "$bus" --cluster-config-file "$D/nodes-$p.conf" \
    --cluster-node-timeout 2000 --save '' --appendonly no --dbfilename "dump-$p.rdb" --daemonize yes --bind 127.0.0.1 \
    --pidfile "$D/node-$i.pid" --logfile "$D/node-$i.log" --dir "$D" --maxclients 10000
  ports+=("$p")
done
for p in "${ports[@]}"; do wait_port "$p" 10; done
redis-cli --cluster create $(printf '127.0.0.1:%s ' "${ports[@]}") --cluster-replicas 1 --cluster-yes >>"$D/create.log" 2>&1
for _ in $(seq 100); do
  redis-cli -p "${ports[0]}" cluster info | grep -q 'cluster_state:ok' && break; sleep 0.1
done
# the masters, for the CPU-per-master hook (target.env)
: > "$D/masters"
for p in "${ports[@]}"; do redis-cli -p "$p" role | head -1 | grep -q master && echo "$p" >> "$D/masters"; done
echo "${ports[0]}" > "$D/redis.port"
nodes=$(printf '127.0.0.1:%s,' "${ports[@]}"); nodes=${nodes%,}
cd "$ROOT"
REDIS_CLUSTER_NODES="$nodes" AUTH_MODE=dev BIND="127.0.0.1:$CG_PORT" \
  WEB_CONCURRENCY="${CG_WORKERS:-2}" LOG_LEVEL=${CG_LOG_LEVEL:-WARNING} \
  MAX_CONNECTIONS_PER_USER=10000 RATE_LIMIT_CONNECT='1000000/minute' \
  RATE_LIMIT_PUBLISH='100000000/minute' RATE_LIMIT_POLL='1000000/minute' \
  setsid "$GUNICORN" -c gunicorn.conf.py --pid "$D/gunicorn.pid" wsgi:app \
  >>"$D/gunicorn.log" 2>&1 < /dev/null &
wait_port "$CG_PORT" 30 || { tail -20 "$D/gunicorn.log" >&2; exit 1; }
for _ in $(seq 50); do [[ -s $D/gunicorn.pid ]] && break; sleep 0.1; done
mint() {
  curl -sf -XPOST "http://127.0.0.1:$CG_PORT/dev/token" -H 'content-type: application/json' \
    -d '{"sub":"'"$1"'","channels":["bench:*"],"permissions":["publish:events"],"ttl":86400}' \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])'
}
mint bench > "$D/token"
: > "$D/sub-headers"
for u in 0 1 2 3 4 5 6 7; do echo "Authorization: Bearer $(mint "bench$u")" >> "$D/sub-headers"; done
echo "chatgenius-cluster up: gunicorn master pid $(cat "$D/gunicorn.pid"), masters $(tr '\n' ' ' < "$D/masters")"
