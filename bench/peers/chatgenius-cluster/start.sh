#!/usr/bin/env bash
# Start ChatGenius realtime on a private Redis Cluster for the benchmark: six redis-server
# nodes on free loopback ports (three masters, one replica each), then gunicorn as in
# ../chatgenius/start.sh but with REDIS_CLUSTER_NODES instead of REDIS_URL.
set -euo pipefail
source "$(dirname "$0")/../../lib.sh"
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
cg_gunicorn_start "$D" REDIS_CLUSTER_NODES="$nodes"
cg_mint_tokens "$D"
echo "chatgenius-cluster up: gunicorn master pid $(cat "$D/gunicorn.pid"), masters $(tr '\n' ' ' < "$D/masters")"
