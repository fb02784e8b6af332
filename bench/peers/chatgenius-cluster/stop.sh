#!/usr/bin/env bash
# Stop gunicorn (its master stops the workers), then the six cluster nodes.
source "$(dirname "$0")/../../lib.sh"
D="$RUN_DIR/chatgenius-cluster"
kill_pidfile "$D/gunicorn.pid"
for f in "$D"/node-*.pid; do [[ -e $f ]] && kill_pidfile "$f"; done
rm -f "$D/token" "$D/sub-headers" "$D"/nodes-*.conf
