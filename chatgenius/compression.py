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

from werkzeug.datastructures import Accept

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


def accepts_gzip(accept: Accept) -> bool:
    """True if a parsed Accept-Encoding (werkzeug's `request.accept_encodings`) allows gzip.

    RFC 9110, 12.5.3: q=0 refuses, `*` covers a coding not named; x-gzip is gzip
    (8.4.1.3), so a named gzip or x-gzip decides before `*` does. werkzeug drops
    an entry whose q is not a number in 0..1.
    """
    named = [q for coding, q in accept if coding.lower() in ("gzip", "x-gzip")]
    if named:
        return max(named) > 0
    return accept.quality("*") > 0


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
