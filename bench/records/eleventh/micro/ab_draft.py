"""An event's validation and envelope (events.drafts_from_request) in one checkout:
.venv/bin/python ab_draft.py CHECKOUT (run it for each, alternating). Best of seven rounds of 20,000."""
import sys
import time

sys.path.insert(0, sys.argv[1])
from chatgenius.events import drafts_from_request  # noqa: E402

payload = {"channel": "bench:b1c17", "type": "message.created", "data": {"bseq": 12345, "bts": 1765000000123456}}
N = 20000
best = 1e9
for _ in range(7):
    t = time.process_time()
    for _ in range(N):
        drafts_from_request(payload, 65536)
    best = min(best, (time.process_time() - t) * 1e6 / N)
print(sys.argv[1], round(best, 2), "µs an event")
