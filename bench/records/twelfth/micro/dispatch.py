"""Python around one delivery: Hub.dispatch to 1,000 subscribers of one channel, the send a C no-op.

Run from the repository's root: python bench/records/twelfth/micro/dispatch.py [x]
(with x: Subscriber.offer replaced by a version with write_now folded in).
"""

import sys
import time

sys.path.insert(0, ".")
from chatgenius.fanout import Hub  # noqa: E402
from chatgenius.subscriber import CLOSED, QUEUED, SENT, Subscriber  # noqa: E402
from chatgenius.wire import GunicornSocket  # noqa: E402

_mono = time.monotonic


def offer(self, seq, frame):
    """Subscriber.offer with write_now folded in (the variant tried)."""
    if self.end_reason is not None:
        return CLOSED
    if self.floor and seq:
        if seq <= self.floor:
            return CLOSED
        self.floor = 0
    if not self._frames:
        out = self.out
        done = out.send_nowait(frame)
        if done == SENT:
            self.sent += 1
            self.last_write = _mono()
            if out.rest:
                self._wake.set()
            return SENT
        if done == CLOSED:
            self.end("client_closed")
            return CLOSED
    self._frames.append((seq, frame))
    self._bytes += len(frame)
    return QUEUED


if len(sys.argv) > 1:
    Subscriber.offer = offer


class Raw:
    """The OS socket's send, replaced by a C function that takes every byte."""

    send = staticmethod(len)


class Sock:
    """What GunicornSocket reads of gevent's socket here."""

    def gettimeout(self):
        """Unused by send_nowait."""
        return 1


hub = Hub()
for i in range(1000):
    s = Subscriber(f"s{i}", "u", ["c"], 1 << 20)
    s.out = GunicornSocket(Sock(), Raw(), True)
    hub.add(s, ["c"])
frames = [b'id: %d\ndata: {"x": 1}\n\n' % i for i in range(2000)]
best = 1e9
for _ in range(7):
    t = time.perf_counter()
    for i, f in enumerate(frames):
        hub.dispatch("c", i + 1, f)
    best = min(best, (time.perf_counter() - t) / len(frames) / 1000 * 1e6)
print(sys.argv[1:], f"dispatch: {best:.3f} us per delivery (send stubbed)")
