#!/usr/bin/env bash
# Start nginx+nchan on 127.0.0.1:$NCHAN_PORT (default 18110) with the config in this folder.
set -euo pipefail
source "$(dirname "$0")/../../lib.sh"
D="$RUN_DIR/nchan"; mkdir -p "$D/tmp"
raise_nofile
port_free "$NCHAN_PORT"
sed -e "s#@RUN@#$D#g" -e "s#@PORT@#$NCHAN_PORT#g" "$(dirname "$0")/nginx.conf.in" > "$D/nginx.conf"
nginx -t -q -e "$D/error.log" -c "$D/nginx.conf"
nginx -e "$D/error.log" -c "$D/nginx.conf"          # daemonizes; master PID in $D/nginx.pid
wait_port "$NCHAN_PORT" 20
for _ in $(seq 50); do [[ -s $D/nginx.pid ]] && break; sleep 0.1; done
echo "nchan up: nginx master pid $(cat "$D/nginx.pid")"
