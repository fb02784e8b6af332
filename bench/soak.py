"""Soak: hours of chat traffic in minutes of code — churn, publishing, resumes — and flat resources.

Starts a private redis-server (or, with `--cluster`, a Redis Cluster) and gunicorn (2 gevent
workers), then for `--minutes`:
- a publisher at `--rate` events/s on a few channels;
- `--clients` resilient clients (tests/support/actors.py) that reconnect with their cursor;
- reconnect churn: every second `--churn` of the clients (default 2 %, at least one) lose their
  connection and resume with Last-Event-ID: half by a TCP reset (abort), half by a clean close,
  so both ways a stream ends are exercised for the whole run.
Every `--sample` seconds it records RSS per worker, open file descriptors, Redis memory,
the service's own greenlet count (/admin/stats) and open streams. At the end it checks:
- nothing lost, nothing duplicated: every client holds every acknowledged event once;
- flat resources: the least-squares slope of each series over the second half of the run stays
  under its bound (RSS < 2 MiB/10 min per worker, fds < 5/10 min, Redis < 2 MiB/10 min,
  greenlets < 20/10 min).
Writes a Markdown table and a PNG plot (matplotlib) to --out.

    make soak                                                          # 2 hours (SOAK_MINUTES), churn 2 %/s
    .venv/bin/python bench/soak.py --minutes 120 --churn 0.02 --out bench/results/soak/soak
    .venv/bin/python bench/soak.py --minutes 1 --sample 5             # the short form (tests)
    .venv/bin/python bench/soak.py --cluster --minutes 30 --sample 30   # on a private Redis Cluster
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT)]

from gevent import monkey  # noqa: E402

monkey.patch_all()

import gevent  # noqa: E402
import psutil  # noqa: E402
from support.actors import Publisher, ResilientClient  # noqa: E402
from support.gunicorn import Gunicorn  # noqa: E402
from support.http_json import get_json  # noqa: E402
from support.procs import find_redis_server, wait_until  # noqa: E402
from support.redis_cluster import RedisCluster, find_redis_cli  # noqa: E402
from support.redis_server import RedisServer  # noqa: E402
from support.service import bearer, dev_token, service_env  # noqa: E402

FLATNESS_MINUTES = 10
BOUNDS_PER_10MIN = {"rss_mib": 2.0, "fds": 5.0, "redis_mib": 2.0, "greenlets": 20.0}


def slope_per_10min(times: list[float], values: list[float]) -> float:
    """Least-squares slope, scaled to a change per 10 minutes."""
    n = len(times)
    if n < 2:
        return 0.0
    mt, mv = sum(times) / n, sum(values) / n
    den = sum((t - mt) ** 2 for t in times) or 1.0
    return sum((t - mt) * (v - mv) for t, v in zip(times, values, strict=True)) / den * 600


class Store:
    """Where the soak's service keeps its events: one private redis-server, or (`--cluster`) a private
    Redis Cluster of three masters with a replica each; `used_memory` is the masters' sum."""

    def __init__(self, cluster: bool) -> None:
        binary = find_redis_server() or "redis-server"
        if cluster:
            self.server: RedisCluster | RedisServer = RedisCluster(binary=binary, cli=find_redis_cli(binary) or "redis-cli")
        else:
            self.server = RedisServer(binary=binary)

    def __enter__(self) -> Store:
        self.server.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.__exit__(*exc)

    @property
    def env(self) -> dict[str, str]:
        """REDIS_URL, or REDIS_CLUSTER_NODES."""
        if isinstance(self.server, RedisCluster):
            return {"REDIS_CLUSTER_NODES": self.server.startup_nodes}
        return {"REDIS_URL": self.server.url}

    def used_memory(self) -> int:
        """Bytes of data Redis holds (every master's, on the cluster)."""
        if isinstance(self.server, RedisCluster):
            return sum(node.client().info("memory")["used_memory"] for node in self.server.masters())
        return self.server.client().info("memory")["used_memory"]


def sample(g: Gunicorn, store: Store, admin: str, t0: float) -> dict:
    workers = [psutil.Process(p) for p in g.worker_pids()]
    stats = get_json(f"{g.base_url}/admin/stats", bearer(admin))[2] or {}
    return {
        "t": round(time.monotonic() - t0, 1),
        "rss_mib": round(sum(w.memory_info().rss for w in workers) / len(workers) / 2**20, 2),
        "fds": sum(w.num_fds() for w in workers) / len(workers),
        "redis_mib": round(store.used_memory() / 2**20, 3),
        "greenlets": sum(stats["greenlets"].values()) / max(1, len(stats["greenlets"])),
        "streams": stats["connections"],
    }


def churn(readers: list[ResilientClient], fraction: float) -> tuple[int, int]:
    """End the connections of `fraction` of the readers (at least one): half reset, half closed cleanly.

    Each reader then reconnects with its cursor (Last-Event-ID), as the bundled client does.
    Returns (aborted, closed).
    """
    picked = random.sample(readers, max(1, round(len(readers) * fraction)))
    aborted = closed = 0
    for n, r in enumerate(picked):
        client = r._client
        if client is None or client.closed:
            continue
        if n % 2 == 0:
            client.abort()  # TCP RST: the server finds out on its next write
            aborted += 1
        else:
            client.close()  # FIN: the server finds out at once
            closed += 1
    return aborted, closed


def run(  # noqa: PLR0913
    minutes: float, rate: float, clients: int, every: float, out: Path | None, churn_fraction: float = 0.02, cluster: bool = False
) -> bool:
    with Store(cluster) as store, Gunicorn(workers=2, env=service_env(
        None, HEARTBEAT_INTERVAL="5", LOG_LEVEL="WARNING", MAX_CONNECTIONS_PER_USER="50",
        RATE_LIMIT_CONNECT="100000/minute", RATE_LIMIT_PUBLISH="100000/minute", **store.env,
    )) as g:
        base = g.base_url
        admin = dev_token(base, "ops", ["channel:*"], ["admin:sse"], ttl=86400)
        channels = [f"channel:soak{i}" for i in range(4)]
        readers = [ResilientClient(base, dev_token(base, f"u{i}", ["channel:*"], ttl=86400),
                                   channels[i % len(channels)], backoff=0.05).start() for i in range(clients)]
        # Publishing starts once every reader is live: a reader's first connect (no cursor) starts at the head.
        wait_until(lambda: all(r.connected for r in readers), 60, message="soak readers connected")
        pubs = [Publisher(base, dev_token(base, "svc", ["channel:*"], ["publish:events"], ttl=86400), ch,
                          rate=rate / len(channels)).start() for ch in channels]
        t0 = time.monotonic()
        samples = [sample(g, store, admin, t0)]
        next_sample = every
        ended = [0, 0]
        while time.monotonic() - t0 < minutes * 60:
            if churn_fraction > 0:
                aborted, closed = churn(readers, churn_fraction)
                ended[0] += aborted
                ended[1] += closed
            gevent.sleep(1.0)
            if time.monotonic() - t0 >= next_sample:
                samples.append(sample(g, store, admin, t0))
                next_sample += every
                print(json.dumps(samples[-1]), flush=True)
        for p in pubs:
            p.stop()
        ok = True
        deadline = time.monotonic() + 30
        for r, ch in zip(readers, [channels[i % len(channels)] for i in range(clients)], strict=True):
            want = set(pubs[channels.index(ch)].acked)
            while not want <= set(r.received) and time.monotonic() < deadline:
                gevent.sleep(0.2)
        lost = dupes = 0
        for i, r in enumerate(readers):
            want = set(pubs[i % len(channels)].acked)
            lost += len(want - set(r.received))
            dupes += sum(c - 1 for c in Counter(r.received).values() if c > 1)
        # What ended streams besides the churn, and what the service warned of: to read a failure by.
        endings = Counter(e for r in readers for e in r.endings)
        warned = Counter(
            f"{line.get('event')}: {line.get('message', '')}"[:120] for line in g.json_logs() if line.get("level") in ("warning", "error")
        )
        told = sum(r.resets for r in readers)
        diagnosis = f"Streams ended by: {dict(endings)}; system.reset received: {told}; service warnings: {dict(warned)}."
        for r in readers:  # all told first: each leaves at its next frame (heartbeat), together
            r.stopped = True
        for r in readers:
            r.stop()
        published = sum(len(p.acked) for p in pubs)
        connects = sum(r.connects for r in readers)
        half = [s for s in samples if s["t"] >= samples[-1]["t"] / 2]
        slopes = {k: slope_per_10min([s["t"] for s in half], [s[k] for s in half]) for k in BOUNDS_PER_10MIN}
        flat = all(abs(slopes[k]) <= BOUNDS_PER_10MIN[k] for k in slopes)
        # A run shorter than FLATNESS_MINUTES is mostly warm-up (history filling to HISTORY_MAXLEN,
        # pools growing): it proves delivery and sampling, and reports the slopes without judging them.
        ok = lost == 0 and dupes == 0 and (flat or minutes < FLATNESS_MINUTES)
        report = render(minutes, rate, clients, samples, slopes, published, connects, lost, dupes, ok, churn_fraction, ended, diagnosis)
        print(report)
        if out is not None:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.with_suffix(".md").write_text(report)
            out.with_suffix(".json").write_text(json.dumps(samples))
            plot(samples, out.with_suffix(".png"))
        return ok


def render(minutes, rate, clients, samples, slopes, published, connects, lost, dupes, ok, churn_fraction, ended, diagnosis="") -> str:  # noqa: PLR0913
    lines = [
        f"Soak: {minutes:g} min, {rate:g} events/s over 4 channels, {clients} clients, reconnect churn "
        f"{churn_fraction:.1%} of them a second ({ended[0]} reset, {ended[1]} closed); "
        f"{published} events published, {connects} connects (resumes included), lost {lost}, duplicated {dupes}.",
        "",
        diagnosis,
        "",
        "| t (s) | RSS/worker (MiB) | fds/worker | Redis (MiB) | greenlets | streams |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for s in samples:
        lines.append(f"| {s['t']:.0f} | {s['rss_mib']:.1f} | {s['fds']:.0f} | {s['redis_mib']:.2f} "
                     f"| {s['greenlets']:.0f} | {s['streams']:.0f} |")
    lines += ["", "Slope over the second half (per 10 min) against its bound:", ""]
    lines += [f"- {k}: {slopes[k]:+.3f} (bound ±{BOUNDS_PER_10MIN[k]})" for k in BOUNDS_PER_10MIN]
    judged = "" if minutes >= FLATNESS_MINUTES else f" (slopes not judged: shorter than {FLATNESS_MINUTES} min)"
    lines += ["", f"Result: {'PASS' if ok else 'FAIL'}{judged}", ""]
    return "\n".join(lines)


def plot(samples: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = ["rss_mib", "fds", "redis_mib", "greenlets"]
    fig, axes = plt.subplots(len(keys), 1, figsize=(8, 8), sharex=True)
    t = [s["t"] / 60 for s in samples]
    for ax, key in zip(axes, keys, strict=True):
        ax.plot(t, [s[key] for s in samples], marker=".")
        ax.set_ylabel(key)
        ax.grid(True, alpha=0.3)
    axes[-1].set_xlabel("minutes")
    fig.suptitle("ChatGenius realtime soak: resources per worker over time")
    fig.tight_layout()
    fig.savefig(path, dpi=80)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=120, help="duration (default 120: the documented 2-hour soak)")
    ap.add_argument("--rate", type=float, default=40)
    ap.add_argument("--clients", type=int, default=200)
    ap.add_argument("--sample", type=float, default=60)
    ap.add_argument("--churn", type=float, default=0.02,
                    help="fraction of the clients whose connection ends each second (half reset, half closed); 0 for none")
    ap.add_argument("--cluster", action="store_true", help="on a private Redis Cluster (3 masters, 3 replicas)")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    if not 0 <= args.churn <= 1:
        ap.error("--churn is a fraction between 0 and 1")
    sys.exit(0 if run(args.minutes, args.rate, args.clients, args.sample, args.out, args.churn, args.cluster) else 1)


if __name__ == "__main__":
    main()
