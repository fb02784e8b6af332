"""Where an idle stream's memory goes: tracemalloc over N idle streams in one process.

    .venv/bin/python bench/idle_memory.py 1000

The first session's tool, kept for comparison: for the gunicorn worker itself
use bench/idle_trace/run.py, which starts tracemalloc inside the worker.
Serves the app with gevent's WSGIServer in this process, opens N idle streams from a child
process, and prints RSS and Python-heap growth per stream with the top
allocation sites. Indicative for gunicorn's gevent worker: the service's own
objects and the greenlet stacks are the same, the server's per-connection
objects differ (pywsgi keeps an 8 KiB read buffer per connection).
"""

import gc
import subprocess
import sys
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

from gevent import monkey  # noqa: E402

monkey.patch_all()

import gevent  # noqa: E402
import greenlet  # noqa: E402
import psutil  # noqa: E402
from gevent.pywsgi import WSGIServer  # noqa: E402

from chatgenius import config  # noqa: E402
from chatgenius.factory import create_app  # noqa: E402

N = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
app = create_app(config.load({
    "AUTH_MODE": "dev", "BIND": "127.0.0.1:18777", "LOG_LEVEL": "WARNING",
    "MAX_CONNECTIONS_PER_USER": "10000", "RATE_LIMIT_CONNECT": "1000000/minute",
}))
srv = WSGIServer(("127.0.0.1", 18777), app, log=None)
srv.start()
client = app.test_client()
tok = client.post("/dev/token", json={"sub": "m", "channels": ["channel:*"]}).get_json()["token"]
proc = psutil.Process()
gc.collect()
tracemalloc.start(8)
rss0 = proc.memory_info().rss
snap0 = tracemalloc.take_snapshot()
holder = subprocess.Popen([sys.executable, "-c", f"""
import socket, time
socks = []
for i in range({N}):
    s = socket.create_connection(("127.0.0.1", 18777))
    s.sendall(b"GET /stream?channels=channel:idle HTTP/1.1\\r\\nHost: x\\r\\nAuthorization: Bearer {tok}\\r\\n\\r\\n")
    socks.append(s)
print("open", flush=True)
time.sleep(60)
"""], stdout=subprocess.PIPE, text=True)
while True:
    gevent.sleep(0.5)
    if len(app.extensions["chatgenius"].bus.hub.subscribers) >= N:
        break
gevent.sleep(2)
gc.collect()
rss1 = proc.memory_info().rss
snap1 = tracemalloc.take_snapshot()
cur, peak = tracemalloc.get_traced_memory()
diff = snap1.compare_to(snap0, "filename")
py_delta = sum(d.size_diff for d in diff)
gls = [o for o in gc.get_objects() if isinstance(o, greenlet.greenlet) and not o.dead]
print(f"N={N} rss/stream={(rss1-rss0)/N/1024:.1f} KiB  python-heap/stream={py_delta/N/1024:.1f} KiB greenlets={len(gls)}")
for d in diff[:12]:
    print(f"  {d.size_diff/N:8.0f} B/stream  {d.traceback[0].filename.replace('site-packages/','')}")
diffl = snap1.compare_to(snap0, "lineno")
for d in diffl[:12]:
    print(f"  {d.size_diff/N:8.0f} B/stream  {str(d.traceback[0]).replace('site-packages/','')}")
holder.kill()
