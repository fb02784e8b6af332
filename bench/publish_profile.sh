#!/usr/bin/env bash
# usage: bench/publish_profile.sh: py-spy (1,000 Hz, 6 s) of one gunicorn worker answering single
# POST /events one at a time over keep-alive (no stream open), bucketed by the frames each sample
# holds; prints the worker's CPU per publish. (The eighth session's bench/records/grid/publish_single_profile.sh, with the lean path's names.)
cd "$(git rev-parse --show-toplevel)/bench"; source lib.sh
OUT=$(mktemp -d)
peers/chatgenius/stop.sh >/dev/null 2>&1; sleep 0.5
CG_WORKERS=1 peers/chatgenius/start.sh >/dev/null 2>&1 || { echo start failed; exit 1; }
trap 'peers/chatgenius/stop.sh >/dev/null 2>&1' EXIT
W=$(ps -o pid= --ppid "$(cat run/chatgenius/gunicorn.pid)" | tr -d ' ')
../.venv/bin/python - "$(cat run/chatgenius/token)" "$W" "$CG_PORT" <<'PY' &
import http.client, json, sys
token, worker, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
conn = http.client.HTTPConnection("127.0.0.1", port)
headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
def cpu():
    fields = open(f"/proc/{worker}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100
def publish(i):
    conn.request("POST", "/events", json.dumps({"channel": f"bench:c{i % 500}", "type": "message.created", "data": {"i": i}}), headers)
    response = conn.getresponse(); response.read()
    return response.status
for i in range(200):
    publish(i)
t0, n = cpu(), 6000
statuses = {publish(i) for i in range(n)}
print(f"statuses {sorted(statuses)}; worker CPU per publish {(cpu() - t0) / n * 1e6:.0f} us")
PY
client=$!
sleep 1
../.venv/bin/py-spy record --pid "$W" --rate 1000 --duration 6 --format raw --nonblocking --output "$OUT/worker.txt" >/dev/null 2>&1
wait $client
python3 - "$OUT/worker.txt" <<'PY'
import collections, sys
order = ["parse", "Parser", "answer_whole", "LeanPublish.head", "_take", "Verifier", "drafts_from_request", "Script.__call__", "publish_once",
         "_decode", "dumps", "loads", "json_payload", "FastPublish.caller", "handle_request", "LeanPublish.serve", "Hub.run"]

buckets, total = collections.Counter(), 0
for line in open(sys.argv[1]):
    stack, n = line.rstrip().rsplit(" ", 1)
    total += int(n)
    frames = [f.split(" (")[0] for f in stack.split(";")]
    key = next((k for k in order if any(k in f for f in frames)), "other")
    buckets[key] += int(n)
print("| first frame matched | samples | share |\n|---|---:|---:|")
for key, n in buckets.most_common():
    print(f"| {key} | {n} | {100 * n / total:.1f} % |")
PY
