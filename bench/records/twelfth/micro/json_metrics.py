"""json.dumps with keyword arguments against a reused encoder; a prometheus_client counter's inc in
multiprocess mode (run with PROMETHEUS_MULTIPROC_DIR set to an empty directory)."""
import json
import timeit

from prometheus_client import Counter, Histogram

d = {"text": "hello world, a chat message of some length", "author": "u123", "n": 5}
enc = json.JSONEncoder(separators=(",", ":"), ensure_ascii=True, allow_nan=False)
f1 = lambda: json.dumps(d, separators=(",", ":"), ensure_ascii=True, allow_nan=False)  # noqa: E731
f2 = lambda: enc.encode(d)  # noqa: E731
assert f1() == f2()
c = Counter("x_total", "x", ["type"])
h = Histogram("lat_seconds", "l")
ch = c.labels("message.created")
for name, f in [("json.dumps(kwargs)", f1), ("encoder.encode", f2), ("counter.labels(t).inc", lambda: c.labels("message.created").inc(1)),
                ("bound counter.inc", lambda: ch.inc(1)), ("histogram.observe", lambda: h.observe(0.002))]:
    print(f"{name}: {min(timeit.repeat(f, number=100000, repeat=5)) * 10:.2f} us")
