"""A realistic chat payload and the compression measurement recorded in docs/PERFORMANCE.md.

`python tests/deploy/chat_payload.py` prints the table; test_compression.py
asserts the saving it reports, so the documented numbers cannot silently rot.
The frames are what the service writes: `id`/`event`/`data` lines around the
envelope events.envelope_json builds, with seeded, varied message texts.
"""

from __future__ import annotations

import random
import sys
import time
import tracemalloc
import zlib
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `chatgenius` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from chatgenius.compression import gzip_body, gzip_stream, stream_compressor  # noqa: E402
from chatgenius.events import dumps, envelope_json  # noqa: E402
from chatgenius.sse import durable_frame  # noqa: E402

WORDS = (
    "the a to and of we it is for on that this can you in with deploy review ship fix merge test "
    "release tomorrow today standup meeting PR branch build staging prod bug issue ticket design "
    "lunch coffee thanks sounds good looks great agreed let me check will do on it done nice "
    "customer dashboard latency metrics alert rollback migration schema query cache redis nginx"
).split()
USERS = [("auth0|6571a9c2e8b1f0", "Maya Chen"), ("google-oauth2|1093847561", "Sam Okafor"),
         ("auth0|64f0c3d21a7e99", "Priya Natarajan"), ("github|4821937", "Leo Martins"),
         ("auth0|65a1b2c3d4e5f6", "Ana Kowalski"), ("google-oauth2|2284756610", "Tom Becker")]


def chat_messages(n: int = 300, seed: int = 7, channel: str = "channel:general") -> list[dict]:
    """The `data` of `n` message.created events: varied texts, authors, mentions, threads."""
    rng = random.Random(seed)
    ts = 1764432000.0
    out = []
    for _ in range(n):
        sub, name = rng.choice(USERS)
        words = rng.choices(WORDS, k=rng.choice([3, 5, 8, 12, 20, 35]))
        text = " ".join(words).capitalize() + rng.choice([".", "!", "?", ""])
        data = {
            "message_id": f"msg_{rng.getrandbits(64):016x}",
            "channel_id": channel,
            "author": {"id": sub, "name": name, "avatar_url": f"https://cdn.chatgenius.app/avatars/{sub.split('|')[1]}.png"},
            "text": text,
            "mentions": [rng.choice(USERS)[0]] if rng.random() < 0.15 else [],
            "thread_id": f"msg_{rng.getrandbits(64):016x}" if rng.random() < 0.2 else None,
            "attachments": [],
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + "Z",
        }
        ts += rng.expovariate(1 / 4.0)
        out.append(data)
    return out


def chat_frames(n: int = 300, seed: int = 7, channel: str = "channel:general") -> list[bytes]:
    """`n` message.created SSE frames as the stream writes them (one per write: the worst case)."""
    frames = []
    rng = random.Random(seed + 1)
    ts = 1764432000.0
    for seq, data in enumerate(chat_messages(n, seed, channel), 1001):
        ts += rng.expovariate(1 / 4.0)
        cursor = f"k3f9x2m7qa-{seq}"
        body = f',"type":"message.created","channel":{dumps(channel)},"data":{dumps(data)},"ts":{round(ts, 6)!r}}}'
        frames.append(durable_frame(cursor, "message.created", envelope_json(cursor, body)))
    return frames


@dataclass(frozen=True)
class Row:
    label: str
    raw: int
    sent: int
    us_per_frame: float
    state_bytes: int

    @property
    def saved(self) -> float:
        return 1 - self.sent / self.raw


def _stream_state_bytes(wbits: int, memlevel: int) -> int:
    """Memory one compressed stream holds: zlib's state after a first flush (tracemalloc sees zlib's allocator)."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        z = zlib.compressobj(6, zlib.DEFLATED, 16 + wbits, memlevel)
        z.compress(b"x" * 100)
        z.flush(zlib.Z_SYNC_FLUSH)
        held = tracemalloc.get_traced_memory()[0] - before
        del z
        return held
    finally:
        tracemalloc.stop()


def measure(frames: list[bytes]) -> list[Row]:
    """Bytes on the wire for the same events: plain, per-frame sync-flushed gzip streams, and one gzip body."""
    raw = sum(map(len, frames))
    rows = [Row("plain (ENABLE_COMPRESSION off)", raw, raw, 0.0, 0)]
    for wbits, memlevel, label in ((12, 4, "stream, shipped (window 4 KB, memLevel 4)"), (15, 8, "stream, zlib default (32 KB, 8)"),
                                   (9, 1, "stream, minimal (512 B, 1)")):
        sent, cost = _best_of(lambda w=wbits, m=memlevel: sum(map(len, gzip_stream(frames, stream_compressor(wbits=w, memlevel=m)))))
        rows.append(Row(label, raw, sent, cost / len(frames) * 1e6, _stream_state_bytes(wbits, memlevel)))
    sent, cost = _best_of(lambda: len(gzip_body(b"".join(frames))))
    rows.append(Row("one gzip body (all events at once, /poll-like)", raw, sent, cost / len(frames) * 1e6, 0))
    return rows


def _best_of(run, times: int = 5) -> tuple[int, float]:
    """run()'s result and its fastest wall time of `times` (the machine is shared: the minimum is the cost)."""
    best = float("inf")
    for _ in range(times):
        start = time.perf_counter()
        result = run()
        best = min(best, time.perf_counter() - start)
    return result, best


def decodes_frame_by_frame(frames: list[bytes]) -> bool:
    """Every write of the compressed stream decodes, on its own arrival, to exactly its frame."""
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    writes = list(gzip_stream(frames))
    return all(d.decompress(w) == f for w, f in zip(writes, frames, strict=False)) and d.decompress(writes[-1]) == b"" and d.eof


def main() -> None:
    frames = chat_frames()
    print(f"{len(frames)} message.created frames, {sum(map(len, frames)) / len(frames):.0f} B each on average\n")
    print("| encoding | bytes | saved | CPU per frame | zlib state per stream |")
    print("|---|---:|---:|---:|---:|")
    for r in measure(frames):
        state = f"{r.state_bytes / 1024:.0f} KB" if r.state_bytes else "-"
        cpu = f"{r.us_per_frame:.1f} µs" if r.us_per_frame else "-"
        print(f"| {r.label} | {r.sent:,} | {r.saved:.0%} | {cpu} | {state} |")


if __name__ == "__main__":
    main()
