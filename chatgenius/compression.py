"""gzip for responses and for the SSE stream (ENABLE_COMPRESSION): pure functions, no Flask.

A stream is one gzip member that never ends while the connection lives, so
each write is followed by a Z_SYNC_FLUSH: the bytes of every frame (and every
heartbeat) leave at once and decode on arrival, at a cost of 4-5 bytes per
write, while the shared window keeps compressing the repeated envelope keys
across frames (that is where the saving on small chat events comes from; see
docs/PERFORMANCE.md, "Compression"). Each compressed stream owns a small zlib
state (`STREAM_WBITS`, `STREAM_MEMLEVEL`: about 30 KB instead of the ~260 KB of
zlib's defaults), which is what thousands of streams per worker can afford. Bodies are
compressed whole; small ones are sent as they are.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Iterator

# A body smaller than this gains a few dozen bytes at best and costs a zlib state.
MIN_BODY_BYTES = 1024
BODY_LEVEL = 6
# Streams: level 6, a 4 KB window (about eight chat frames back), memLevel 4: ~30 KB per stream,
# 80% saved on chat frames against 83% for zlib's defaults at 262 KB (docs/PERFORMANCE.md).
STREAM_LEVEL = 6
STREAM_WBITS = 12
STREAM_MEMLEVEL = 4
_GZIP = 16  # wbits offset that makes zlib write a gzip header and trailer (RFC 1952)

COMPRESSIBLE_TYPES = frozenset({"application/json", "text/plain", "text/event-stream"})


def accepts_gzip(accept_encoding: str | None) -> bool:
    """True if an Accept-Encoding value allows gzip (RFC 9110, 12.5.3: q=0 refuses, `*` covers it)."""
    if not accept_encoding:
        return False
    gzip_q: float | None = None
    star_q: float | None = None
    for item in accept_encoding.split(","):
        coding, _, params = item.partition(";")
        coding = coding.strip().lower()
        q = _qvalue(params)
        if coding in ("gzip", "x-gzip"):
            gzip_q = q if gzip_q is None else max(gzip_q, q)
        elif coding == "*":
            star_q = q
    if gzip_q is not None:
        return gzip_q > 0
    return star_q is not None and star_q > 0


def _qvalue(params: str) -> float:
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "q":
            try:
                return min(1.0, max(0.0, float(value.strip())))
            except ValueError:
                return 0.0
    return 1.0


def gzip_body(data: bytes, level: int = BODY_LEVEL) -> bytes:
    """A complete gzip member (no file name, mtime 0, so equal bodies compress to equal bytes)."""
    z = zlib.compressobj(level, zlib.DEFLATED, _GZIP + zlib.MAX_WBITS)
    return z.compress(data) + z.flush(zlib.Z_FINISH)


def stream_compressor(level: int = STREAM_LEVEL, wbits: int = STREAM_WBITS, memlevel: int = STREAM_MEMLEVEL) -> zlib._Compress:
    """The zlib state of one compressed stream."""
    return zlib.compressobj(level, zlib.DEFLATED, _GZIP + wbits, memlevel)


def gzip_stream(chunks: Iterable[bytes], compressor: zlib._Compress | None = None) -> Iterator[bytes]:
    """`chunks` as one gzip member, sync-flushed after every chunk so none waits in zlib's buffer.

    Closing this generator closes `chunks` (the stream loop's `finally` detaches
    from the bus and releases the connection's lease), and a stream that ends
    on its own gets the gzip trailer, so the client can tell a clean end.
    """
    z = compressor or stream_compressor()
    source = iter(chunks)
    try:
        for chunk in source:
            yield z.compress(chunk) + z.flush(zlib.Z_SYNC_FLUSH)
        yield z.flush(zlib.Z_FINISH)
    finally:
        close = getattr(source, "close", None)
        if close is not None:
            close()
