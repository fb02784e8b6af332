"""The publish head's parse, two checkouts alternating: .venv/bin/python ab_parse.py OLD_CHECKOUT NEW_CHECKOUT
(a usual Go publisher's head: 7 headers, a 700-byte token). Best of six rounds of 20,000, µs a head."""
import importlib.util
import sys
import time


def load(root: str, name: str):
    spec = importlib.util.spec_from_file_location(name, f"{root}/chatgenius/web/publish_head.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod.parse


old, new = load(sys.argv[1], "head_old"), load(sys.argv[2], "head_new")
body = b'{"channel":"bench:b1c17","type":"message.created","data":{"bseq":12345,"bts":1765000000123456}}'
req = (f"POST /events HTTP/1.1\r\nHost: 127.0.0.1:18400\r\nUser-Agent: Go-http-client/1.1\r\nContent-Length: {len(body)}\r\n"
       f"Authorization: Bearer {'x' * 700}\r\nContent-Type: application/json\r\nAccept-Encoding: gzip\r\n\r\n").encode() + body
assert old(req).headers == new(req).headers
N = 20000
res: dict[str, list[float]] = {"old": [], "new": []}
for _ in range(6):
    for name, parse in (("old", old), ("new", new)):
        t = time.process_time()
        for _ in range(N):
            parse(req)
        res[name].append((time.process_time() - t) * 1e6 / N)
print({k: round(min(v), 2) for k, v in res.items()}, "µs a head")
