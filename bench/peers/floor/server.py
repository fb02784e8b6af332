"""A floor for our architecture, not a product: the least a CPython + gevent + Redis server does per event.

Why: the chat bar asks our per-event CPU to fall by more than half, and no stage
of our publish/deliver path holds that much (docs/PERFORMANCE.md). This server
does only what any server of our design must do for ssebench's loads, with none
of the service around it: N worker processes (SO_REUSEPORT on one port), each a
gevent loop with one pub/sub connection; `POST /pub/<chan>` runs one Lua call
(INCR, XADD into the channel's stream, PUBLISH: the shape of our publish script)
on a Redis connection of its own and answers the id; `GET /sub/<chan>` answers an
SSE head and joins the worker's channel → sockets map; the pub/sub reader frames
each message once and sends it on every local socket. No auth, no validation,
no metrics, no logging, no limits, no replay, no heartbeats, no slow-consumer
handling, no chunked framing: what it costs is below anything the service can cost.

    python server.py PORT REDIS_PORT WORKERS PIDFILE
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys

PUBLISH_LUA = (
    "local s = redis.call('INCR', KEYS[1]) "
    "redis.call('XADD', KEYS[2], 'MAXLEN', '~', 1000, s .. '-1', 'd', ARGV[2]) "
    "redis.call('PUBLISH', ARGV[1], s .. '\\n' .. ARGV[2]) "
    "return s"
)
SSE_HEAD = (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
            b"Connection: close\r\n\r\n")
NOT_FOUND = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


def worker(port: int, redis_port: int) -> None:
    """One worker process: the accept loop, the per-connection handler and the pub/sub reader."""
    from gevent import monkey

    monkey.patch_all()
    import gevent
    import hiredis
    from gevent.server import StreamServer

    def redis_conn() -> tuple[socket.socket, hiredis.Reader]:
        c = socket.create_connection(("127.0.0.1", redis_port))
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return c, hiredis.Reader()

    def call(conn: socket.socket, reader: hiredis.Reader, *args: bytes | str | int) -> object:
        conn.sendall(hiredis.pack_command(args))
        while (reply := reader.gets()) is False:
            data = conn.recv(65536)
            if not data:
                raise ConnectionError("redis closed")
            reader.feed(data)
        return reply

    boot, boot_reader = redis_conn()
    sha = call(boot, boot_reader, "SCRIPT", "LOAD", PUBLISH_LUA)
    boot.close()

    subs: dict[bytes, set] = {}
    feed, feed_reader = redis_conn()

    def read_feed() -> None:
        while True:
            data = feed.recv(65536)
            if not data:
                os._exit(1)
            feed_reader.feed(data)
            while (msg := feed_reader.gets()) is not False:
                if msg[0] != b"message":
                    continue
                seq, _, body = msg[2].partition(b"\n")
                frame = b"id: %b\ndata: %b\n\n" % (seq, body)
                for raw in subs.get(msg[1], ()):
                    try:
                        raw.send(frame)
                    except OSError:
                        pass  # a floor: a full or closed socket just misses the event

    def handle(sock: socket.socket, _addr: object) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buf = b""
        conn = reader = None
        while True:
            while (end := buf.find(b"\r\n\r\n")) < 0:
                data = sock.recv(65536)
                if not data:
                    return
                buf += data
            head, buf = buf[:end], buf[end + 4:]
            line, _, headers = head.partition(b"\r\n")
            method, path, _ = line.split(b" ", 2)
            if method == b"GET" and path.startswith(b"/sub/"):
                chan = path[5:]
                sock.sendall(SSE_HEAD)
                local = subs.get(chan)
                if local is None:
                    local = subs[chan] = set()
                    feed.sendall(hiredis.pack_command(("SUBSCRIBE", chan)))
                raw = sock._sock  # gevent's socket wraps the OS socket: sends from the reader skip gevent
                local.add(raw)
                try:
                    while sock.recv(4096):
                        pass
                finally:
                    local.discard(raw)
                    if not local:
                        del subs[chan]
                        feed.sendall(hiredis.pack_command(("UNSUBSCRIBE", chan)))
                return
            if method != b"POST" or not path.startswith(b"/pub/"):
                sock.sendall(NOT_FOUND)
                return
            at = headers.lower().find(b"content-length:") + 15
            length = int(headers[at:].split(b"\r\n", 1)[0])
            while len(buf) < length:
                data = sock.recv(65536)
                if not data:
                    return
                buf += data
            body, buf = buf[:length], buf[length:]
            chan = path[5:]
            if conn is None:
                conn, reader = redis_conn()
            seq = call(conn, reader, "EVALSHA", sha, 2, "floor:seq", b"floor:h:" + chan, chan, body)
            answer = b'{"id":%d}' % seq
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%b"
                         % (len(answer), answer))

    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(4096)
    gevent.spawn(read_feed)
    StreamServer(listener, handle).serve_forever()


def main() -> None:
    """The master: start the workers, write the pidfile, stop them on TERM."""
    if sys.argv[1] == "--worker":
        worker(int(sys.argv[2]), int(sys.argv[3]))
        return
    port, redis_port, workers, pidfile = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    procs = [subprocess.Popen([sys.executable, __file__, "--worker", port, redis_port]) for _ in range(workers)]
    with open(pidfile, "w") as f:
        f.write(f"{os.getpid()}\n")

    def stop(*_: object) -> None:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait()
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for p in procs:
        p.wait()


if __name__ == "__main__":
    main()
