"""Redis Sentinel for failover tests: a master, a replica and one Sentinel, all private.

Timings are shrunk (down-after 1 s, failover-timeout 3 s, quorum 1) so a
failover completes within a few seconds of killing the master.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import redis

from .procs import wait_until
from .redis_server import RedisServer


class RedisSentinel(RedisServer):
    """`redis-server <conf> --sentinel` watching one master, tuned for fast test failovers.

    Sentinel rewrites its config file, so it is generated into the sentinel's own dir.
    """

    role = "sentinel"

    def __init__(
        self,
        master: RedisServer,
        name: str = "mymaster",
        port: int | None = None,
        *,
        down_after_ms: int = 1000,
        failover_timeout_ms: int = 3000,
        binary: str | None = None,
        workdir: Path | None = None,
    ) -> None:
        super().__init__(port, binary=binary or master.binary, workdir=workdir)
        self.master = master
        self.name = name
        self.conf_path = self.dir / f"sentinel-{self.port}.conf"
        self.conf_path.write_text(
            f"port {self.port}\nbind 127.0.0.1\ndir {self.dir}\n"
            f"sentinel monitor {name} 127.0.0.1 {master.port} 1\n"
            f"sentinel down-after-milliseconds {name} {down_after_ms}\n"
            f"sentinel failover-timeout {name} {failover_timeout_ms}\n"
        )

    def argv(self) -> list[str]:
        return [self.binary, str(self.conf_path), "--sentinel", "--logfile", ""]

    def master_port(self) -> int | None:
        """The port Sentinel currently names as master (changes after a failover)."""
        with self.client() as c:
            addr = c.execute_command("SENTINEL", "get-master-addr-by-name", self.name)
        return int(addr[1]) if addr else None

    def replica_count(self) -> int:
        """How many replicas of the master Sentinel has discovered."""
        with self.client() as c:
            return len(c.execute_command("SENTINEL", "replicas", self.name))


@dataclass(frozen=True)
class SentinelSetup:
    """A master, one replica of it, and a Sentinel watching both."""

    master: RedisServer
    replica: RedisServer
    sentinel: RedisSentinel

    @property
    def sentinel_address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.sentinel.port)


@contextmanager
def sentinel_setup(name: str = "mymaster", *, appendonly: bool = False) -> Iterator[SentinelSetup]:
    """Start master + replica + sentinel, wait until replication and discovery are done.

    Everything is stopped on exit, also when the body raises.
    """
    with ExitStack() as stack:
        # Redis 7 waits 5 s before a diskless full sync by default; tests need it now.
        fast = ["--repl-diskless-sync-delay", "0"]
        master = stack.enter_context(RedisServer(appendonly=appendonly, args=fast))
        replica = stack.enter_context(RedisServer(appendonly=appendonly, args=fast, replica_of=master))
        sentinel = stack.enter_context(RedisSentinel(master, name))

        def linked() -> bool:
            with replica.client() as c:
                return c.info("replication").get("master_link_status") == "up"

        wait_until(linked, 15, message="replica linked to master")
        wait_until(lambda: sentinel.replica_count() >= 1, 15, message="sentinel found replica", ignore=(redis.RedisError,))
        yield SentinelSetup(master, replica, sentinel)
