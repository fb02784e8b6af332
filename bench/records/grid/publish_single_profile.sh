#!/usr/bin/env bash
# usage: publish_single_profile.sh: py-spy (1,000 Hz, 6 s) of one gunicorn worker answering single
# POST /events one at a time over keep-alive (no stream open). Added in the eighth session; since
# the ninth it is bench/publish_profile.sh (the same steps, with the lean path's frame names added
# to its buckets), which this runs.
exec bash "$(git rev-parse --show-toplevel)/bench/publish_profile.sh" "$@"
