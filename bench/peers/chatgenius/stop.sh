#!/usr/bin/env bash
# Stop gunicorn (by its recorded master PID; the master stops its workers), then its private Redis.
source "$(dirname "$0")/../../lib.sh"
kill_pidfile "$RUN_DIR/chatgenius/gunicorn.pid"
kill_pidfile "$RUN_DIR/chatgenius/redis.pid"
rm -f "$RUN_DIR/chatgenius/token" "$RUN_DIR/chatgenius/sub-headers"
