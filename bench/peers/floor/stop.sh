#!/usr/bin/env bash
# Stop the floor server (its master stops the workers), then its private Redis.
source "$(dirname "$0")/../../lib.sh"
kill_pidfile "$RUN_DIR/floor/server.pid"
kill_pidfile "$RUN_DIR/floor/redis.pid"
