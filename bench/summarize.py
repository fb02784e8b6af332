#!/usr/bin/env python3
"""Render ssebench JSON result lines (bench/run.sh) as Markdown tables.

    python3 bench/summarize.py bench/results/<stamp>/*.jsonl    # headline + details
    ssebench run ... | python3 bench/summarize.py --line          # one progress line per result

The headline table has one row per system; the detail tables one row per step.
"""
from __future__ import annotations

import json
import sys
from collections import defaultdict

ORDER = {"chatgenius": 0, "nchan": 1, "flask-sse": 2}


def load(paths):
    rows = []
    for p in paths:
        with open(p) as f:
            rows += [json.loads(line) for line in f if line.startswith("{")]
    return rows


def fmt(v, nd=1):
    if v is None:
        return "-"
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, float):
        return f"{v:,.{nd}f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def us(st):
    v = st.get("server_plus_redis_cpu_us_per_delivery")
    return None if st.get("server_processes_changed") else v


def line(d):
    c = d["connect"]
    s = f"{d['label']} {d['scenario']} n={d['n']} ready={c['ready']} failed={c['failed']} connect={c['seconds']}s"
    if d.get("idle"):
        i = d["idle"]
        s += f" stayed={i['all_stayed_connected']} rss/stream={i['server_rss_kib_per_conn']:.1f}KiB"
    for st in d.get("steps", []):
        s += (f"\n   rate={st['rate']:g} del/s={st['deliveries_per_s']:.0f} p50={st['latency_ms']['p50']:.1f}ms "
              f"p99={st['latency_ms']['p99']:.1f}ms missed={st['missed']} us/del={fmt(us(st))} ok={st['ok']}")
    if d.get("max_ok_rate"):
        s += f"\n   max ok rate {d['max_ok_rate']:g} -> {d['max_ok_deliveries_per_s']:.0f} deliveries/s; {d.get('stop_reason', '')}"
    if d.get("storm"):
        t = d["storm"]
        s += (f"\n   storm: live {t['live']}/{t['streams']} all in {t['all_live_s']}s; replayed {t['replay_complete']}/{t['streams']}"
              f" all in {t['all_replayed_s']}s")
    return s


def step_at(d, rate):
    for st in (d or {}).get("steps", []):
        if st["rate"] == rate:
            return st
    return None


def headline(rows):
    by = defaultdict(lambda: defaultdict(list))
    for d in rows:
        by[d["label"]][d["scenario"]].append(d)
    labels = sorted(by, key=lambda x: ORDER.get(x, 9))
    sizes = sorted({d["n"] for d in rows if d["scenario"].startswith("idle-")})
    print("### Headline (one run, same generator)\n")
    hdr = ["system"] + [f"idle KiB/stream @{n:,}" for n in sizes] + [
        "Redis clients while idle", "fan-out max deliveries/s (p99 ≤ 1 s, none missed)",
        "10 ev/s: p50 / p99 ms", "10 ev/s: µs/delivery", "100 ev/s: p50 / p99 ms", "100 ev/s: µs/delivery",
        "spread: deliveries/s, missed, p99 ms", "storm: all live s", "storm: replayed streams / all s"]
    print("| " + " | ".join(hdr) + " |")
    print("|" + "---|" * len(hdr))
    for lb in labels:
        sc = by[lb]
        cells = [lb]
        for n in sizes:
            d = (sc.get(f"idle-{n}") or [None])[-1]
            if d is None:
                cells.append("-")
                continue
            i = d.get("idle") or {}
            ok = d["connect"]["ready"] == n and i.get("all_stayed_connected")
            note = "" if ok else f" ({d['connect']['ready']:,} ready, {(i.get('alive_end') or 0):,} stayed)"
            cells.append(fmt(i.get("server_rss_kib_per_conn")) + note)
        # the largest size whose Redis answered INFO (a Redis at maxclients refuses it)
        rc = "none"
        for n in sizes:
            d = (sc.get(f"idle-{n}") or [None])[-1]
            r = ((d or {}).get("samples", {}).get("after_hold") or {}).get("redis")
            if r:
                rc = f"{fmt(r['connected_clients'])} @{n:,}"
        cells.append(rc)
        fans = sc.get("fanout", []) + sc.get("fanout-refine", [])
        best = max((d.get("max_ok_deliveries_per_s") or 0 for d in fans), default=None)
        cells.append(fmt(best, 0) if fans else "-")
        f = (sc.get("fanout") or [None])[-1]
        for rate in (10, 100):
            st = step_at(f, rate)
            if st:
                flag = "" if st["ok"] else " (not ok)"
                cells.append(f"{fmt(st['latency_ms']['p50'])} / {fmt(st['latency_ms']['p99'])}{flag}")
                cells.append(fmt(us(st)))
            else:
                cells += ["-", "-"]
        sp = (sc.get("spread") or [None])[-1]
        if sp and sp.get("steps"):
            st = sp["steps"][0]
            cells.append(f"{fmt(st['deliveries_per_s'], 0)}, {fmt(st['missed'])}, {fmt(st['latency_ms']['p99'])}")
        else:
            cells.append("n/a" if lb == "flask-sse" else "-")
        t = ((sc.get("storm") or [None])[-1] or {}).get("storm")
        if t:
            cells.append(fmt(t["all_live_s"], 2) if t["all_live_s"] >= 0 else f"{t['live']:,}/{t['streams']:,} live")
            done = fmt(t["all_replayed_s"], 2) if t["all_replayed_s"] >= 0 else "never"
            cells.append(f"{t['replay_complete']:,}/{t['streams']:,} / " + done)
        else:
            cells += ["-", "-"]
        print("| " + " | ".join(cells) + " |")
    print()


def idle(rows):
    print("### Idle streams\n")
    print("| system | streams | ready | all stayed | connect s | server RSS before → after MiB | RSS KiB/stream | PSS KiB/stream "
          "| Redis clients | server CPU s (connect / hold) |")
    print("|---|---:|---:|---|---:|---|---:|---:|---:|---|")
    for d in sorted((d for d in rows if d["scenario"].startswith("idle-")), key=lambda d: (ORDER.get(d["label"], 9), d["n"])):
        s, i = d["samples"], d.get("idle") or {}
        b, a = s["before"].get("server") or {}, (s.get("after_hold") or {}).get("server") or {}
        r = (s.get("after_hold") or {}).get("redis")
        print(f"| {d['label']} | {d['n']:,} | {d['connect']['ready']:,} | {i.get('all_stayed_connected')} | {fmt(d['connect']['seconds'])} "
              f"| {fmt(b.get('rss_kib', 0) / 1024)} → {fmt(a.get('rss_kib', 0) / 1024)} | {fmt(i.get('server_rss_kib_per_conn'))} "
              f"| {fmt(i.get('server_pss_kib_per_conn'))} | {fmt(r['connected_clients']) if r else '-'} "
              f"| {fmt(d['connect']['server_cpu_s'], 2)} / {fmt(i.get('server_cpu_s'), 2)} |")
    print()


def steps(rows, prefixes, title):
    print(f"### {title}\n")
    print("| system | scenario | streams | rate ev/s | pub rate | deliveries/s | offered/s | p50 ms | p99 ms | max ms | missed "
          "| server CPU s | Redis CPU s | gen CPU s | server µs/del | +Redis µs/del | ok |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for d in sorted((d for d in rows if d["scenario"] in prefixes), key=lambda d: ORDER.get(d["label"], 9)):
        for st in d.get("steps", []):
            lat = st["latency_ms"]
            print(f"| {d['label']} | {d['scenario']} | {st['alive_start']:,} | {fmt(st['rate'], 0)} "
                  f"| {fmt(st['publish_rate_achieved'], 0)} "
                  f"| {fmt(st['deliveries_per_s'], 0)} | {fmt(st['offered_deliveries_per_s'], 0)} | {fmt(lat['p50'])} | {fmt(lat['p99'])} "
                  f"| {fmt(lat['max'])} | {fmt(st['missed'])} | {fmt(st['server_cpu_s'], 2)} | {fmt(st['redis_cpu_s'], 2)} "
                  f"| {fmt(st['gen_cpu_s'], 2)} | {fmt(st['server_cpu_us_per_delivery'])} | {fmt(us(st))} | {st['ok']} |")
        if d.get("stop_reason"):
            print(f"| {d['label']} | {d['scenario']} | stop: {d['stop_reason']} |" + " |" * 14)
    print()


def per_publish(st, key):
    """CPU µs per published event (with all its deliveries): the chat scenario's headline."""
    # the publisher's `sent` is cumulative over steps (and counts priming events): use this step's own
    sent = (st.get("publish_rate_achieved") or 0) * (st.get("publish_s") or 0)
    if not sent or st.get("server_processes_changed") or st.get(key) is None or st[key] < 0:
        return None
    return st[key] * 1e6 / sent


def redis_per_publish(st):
    """Redis CPU µs per publish; with several Redis listed (a cluster's masters), each one's after it."""
    total = fmt(per_publish(st, "redis_cpu_s"), 0)
    nodes = st.get("redis_node_cpu_s")
    sent = (st.get("publish_rate_achieved") or 0) * (st.get("publish_s") or 0)
    if not nodes or not sent:
        return total
    return f"{total} ({' / '.join(fmt(c * 1e6 / sent, 0) for c in nodes)})"


def chat(rows):
    title = "Chat-shaped: 5,000 streams on 500 channels (10 each), events to random channels, 8 publishers"
    print(f"### {title}\n")
    print("| system | streams | rate ev/s | pub rate | deliveries/s | p50 ms | p99 ms | max ms | missed "
          "| server µs/publish | Redis µs/publish | ok |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for d in sorted((d for d in rows if d["scenario"] == "chat"), key=lambda d: ORDER.get(d["label"], 9)):
        for st in d.get("steps", []):
            lat = st["latency_ms"]
            print(f"| {d['label']} | {st['alive_start']:,} | {fmt(st['rate'], 0)} | {fmt(st['publish_rate_achieved'], 0)} "
                  f"| {fmt(st['deliveries_per_s'], 0)} | {fmt(lat['p50'])} | {fmt(lat['p99'])} | {fmt(lat['max'])} "
                  f"| {fmt(st['missed'])} "
                  f"| {fmt(per_publish(st, 'server_cpu_s'), 0)} | {redis_per_publish(st)} | {st['ok']} |")
    print()


def storm(rows):
    print("### Resume storm\n")
    print("| system | streams | with cursor | back | reconnected | failed | live p50 s | all live s | replay complete "
          "| replay p50 s | all replayed s "
          "| replayed / expected events | server CPU s | Redis CPU s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|")
    for d in sorted((d for d in rows if d.get("storm")), key=lambda d: ORDER.get(d["label"], 9)):
        t = d["storm"]
        print(f"| {d['label']} | {t['streams']:,} | {t['with_cursor']:,} | {t['back']} | {t['reconnected']:,} | {t['failed']:,} "
              f"| {fmt(t['live_p50_s'], 2)} | {fmt(t['all_live_s'], 2)} | {t['replay_complete']:,} | {fmt(t['replay_p50_s'], 2)} "
              f"| {fmt(t['all_replayed_s'], 2)} | {t['replay_delivered']:,} / {t['replay_expected']:,} "
              f"| {fmt(t['server_cpu_s'], 2)} | {fmt(t['redis_cpu_s'], 2)} |")
    print("\n(-1 = not every stream got there within the storm's 60 s limit.)\n")


def machine(rows, paths):
    """Whole-machine CPU per run (machine-cpu.tsv) against what the benchmark's own processes used."""
    import os
    tsv = {os.path.join(os.path.dirname(p), "machine-cpu.tsv") for p in paths}
    runs = []
    for t in sorted(tsv):
        if os.path.exists(t):
            with open(t) as f:
                runs += [ln.rstrip("\n").split("\t") for ln in f if ln.strip()]
    if not runs:
        return
    own = {}
    for d in rows:
        s = d["samples"]
        b, a = s.get("before") or {}, s.get("after_close") or {}
        cpu = d.get("gen_cpu_s_total") or 0
        for k in ("server", "redis"):
            if (b.get(k) or {}).get("cpu_s") is not None and (a.get(k) or {}).get("cpu_s") is not None:
                cpu += a[k]["cpu_s"] - b[k]["cpu_s"]
        own[(d["label"], d["scenario"])] = cpu
    print("### Machine CPU during each run (2 cores = 2.0)\n")
    print("| system | scenario | wall s | machine busy, cores | benchmark processes, cores | everything else, cores | loadavg at end |")
    print("|---|---|---:|---:|---:|---:|---|")
    for label, scenario, wall, busy, load in runs:
        wall, busy = float(wall), float(busy)
        mine = own.get((label, scenario))
        other = None if mine is None else max(0.0, busy - mine) / wall
        ours = None if mine is None else mine / wall
        print(f"| {label} | {scenario} | {wall:.0f} | {busy / wall:.2f} | {fmt(ours, 2)} | {fmt(other, 2)} | {load} |")
    print()


if __name__ == "__main__":
    if sys.argv[1:] == ["--line"]:
        for raw in sys.stdin:
            if raw.startswith("{"):
                print(line(json.loads(raw)), flush=True)
        sys.exit(0)
    rows = load(sys.argv[1:])
    headline(rows)
    idle(rows)
    steps(rows, {"fanout", "fanout-refine"}, "Fan-out: 1,000 subscribers on one channel, rate stepped until p99 > 1 s or a miss")
    steps(rows, {"spread"}, "Spread: streams on 3 of 1,000 channels each, events to random channels")
    chat(rows)
    storm(rows)
    machine(rows, sys.argv[1:])
