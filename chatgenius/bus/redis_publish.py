"""Publishing to Redis: the key layout and the one call of lua/publish.lua.

Shared by the service's RedisBus and the standalone publisher (chatgenius/publisher.py),
so a worker or cron job publishes exactly as the service does: same script, same keys,
same ids. Imports neither gevent nor Flask (a plain Python process may import it).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from importlib import resources
from typing import Any, Protocol

import redis

from ..cursor import new_epoch
from ..events import Draft, digest, envelope_parts
from ..redis_errors import translated
from .base import BusUnavailable, IdempotencyConflict, Published, Quota, QuotaExceeded

EPOCH_KEY = "cg:epoch"
SEQ_KEY = "cg:seq"
QUOTA_PREFIX = "cg:q:"  # publish quotas' counters (EventBus.publish)
LIVE_PREFIX = "cg:l:"
_REPLAYED = b"="


def history_key(channel: str) -> str:
    """The Redis stream holding a channel's history; the braces keep a channel's keys in one cluster slot."""
    return "cg:h:{" + channel + "}"


def meta_key(channel: str) -> str:
    """The hash holding a channel's trim watermark (the newest seq dropped from history)."""
    return "cg:m:{" + channel + "}"


def live_channel(channel: str) -> str:
    """The pub/sub channel a channel's live events are published on."""
    return LIVE_PREFIX + channel


def idempotency_key(kind: str, scope: str, key: str) -> str:
    """The Redis key remembering `key` of `scope`; the scope is length-prefixed, so no (scope, key)
    pair can spell another's (scope "a:b" key "c" vs scope "a" key "b:c"). `kind`: r request, e event."""
    return f"cg:i:{kind}:{len(scope)}:{scope}:{key}"


def script_source() -> str:
    """lua/publish.lua's text, read from the package (presence's scripts embed it too)."""
    return resources.files(__package__).joinpath("lua/publish.lua").read_text()


class KeySpace(Protocol):
    """Where a publish writes: Keys (one Redis) or a Redis Cluster shard (bus/cluster_shards.Shard)."""

    @property
    def epoch_key(self) -> str:
        """The key of the epoch (cursor.new_epoch names a new one)."""

    @property
    def seq_key(self) -> str:
        """The key of the sequence every publish increments."""

    def history_key(self, channel: str) -> str:
        """A channel's history stream."""

    def meta_key(self, channel: str) -> str:
        """A channel's trim watermark hash."""

    def live(self, channel: str) -> str:
        """A channel's live pub/sub channel."""

    def new_epoch(self) -> str:
        """A candidate epoch."""


class Keys:
    """Where a publish writes: one Redis' key names (this class); a Redis Cluster shard has its own
    (bus/cluster_shards.Shard: the same names under its hash tag, its own epochs)."""

    epoch_key = EPOCH_KEY
    seq_key = SEQ_KEY
    history_key = staticmethod(history_key)
    meta_key = staticmethod(meta_key)
    live = staticmethod(live_channel)
    new_epoch = staticmethod(new_epoch)


SINGLE = Keys()


class PublishScript:
    """lua/publish.lua bound to a client and the history settings; see EventBus.publish_once.

    `keys`: where it writes (Keys). A call with no events runs only the script's writer
    fence (RedisBus.connecting).
    """

    def __init__(
        self, client: redis.Redis, maxlen: int, ttl: int, window: int = 600,
        runner: Callable[..., object] | None = None, keys: KeySpace = SINGLE,
    ) -> None:
        self.client = client
        self.keys = keys
        self.maxlen = maxlen
        self.ttl = ttl
        self.meta_ttl = max(ttl * 10, 7 * 86400)
        self.window = window
        # `runner(keys=, args=)` runs the script: redis-py's own Script by default; the service
        # passes bus/redis_script.Script (gevent, connections of its own, no pool checks per call).
        self._script: Callable[..., Any] = runner or client.register_script(script_source())

    def call_args(self, drafts: Sequence[Draft]) -> tuple[list[str], list[object]]:
        """KEYS and ARGV of lua/publish.lua for `drafts` alone (no quotas, no idempotency): also what
        scripts that publish atomically with a state change of their own pass (presence/redis.py)."""
        at = self.keys
        history, meta, live = at.history_key, at.meta_key, at.live
        keys: list[str] = [at.epoch_key, at.seq_key]
        args: list[object] = [at.new_epoch(), self.maxlen, self.ttl, self.meta_ttl, len(drafts)]
        for d in drafts:
            keys += [history(d.channel), meta(d.channel)]
            durable = d.durable
            args += ["1" if durable else "0", live(d.channel), d.type, *envelope_parts(durable, d.body)]
        return keys, args

    def publish(self, drafts: Sequence[Draft], quotas: Sequence[Quota] = ()) -> list[str | None]:
        """See EventBus.publish."""
        return self.publish_once(drafts, "", None, quotas).ids

    def publish_once(
        self, drafts: Sequence[Draft], scope: str, key: str | None = None, quotas: Sequence[Quota] = (),
    ) -> Published:
        """See EventBus.publish_once: one script call, one round trip."""
        keys, args = self.call_args(drafts)
        keyed = key is not None or any(d.key is not None for d in drafts)
        if quotas or keyed:
            keys += [QUOTA_PREFIX + q.key + ":" + str(q.seconds) for q in quotas]
            args.append(len(quotas))
            for q in quotas:
                args += [q.amount, q.seconds]
        if keyed:
            args += [self.window, digest(drafts) if key is not None else ""]
            if key is not None:
                keys.append(idempotency_key("r", scope, key))
            for d in drafts:
                if d.key is None:
                    args.append("")
                else:
                    args.append(d.fingerprint)
                    keys.append(idempotency_key("e", scope, d.key))
        try:
            result = self._script(keys=keys, args=args)
        except (redis.RedisError, OSError) as exc:
            failure = self._failed(exc, quotas)
            if failure is exc:
                raise
            raise failure from (exc if isinstance(failure, BusUnavailable) else None)
        return self._decode(result)

    def _decode(self, result: Any) -> Published:
        epoch = result[0]
        if epoch == _REPLAYED:
            return Published([i or None for i in result[1].decode().split(",")], replayed=True)
        epoch_s = epoch.decode()
        ids: list[str | None] = []
        repeats = []
        for i, v in enumerate(result[1:]):
            if isinstance(v, bytes):  # a keyed event seen before: its stored cursor
                repeats.append(i)
                ids.append(v.decode() or None)
            elif v:
                ids.append(f"{epoch_s}-{v}")
            else:
                ids.append(None)
        return Published(ids, repeats=frozenset(repeats)) if repeats else Published(ids)

    @staticmethod
    def _failed(exc: BaseException, quotas: Sequence[Quota]) -> BaseException:
        """The script's refusals as the bus' exceptions; Redis unavailable is BusUnavailable (redis_errors.py)."""
        text = str(exc) if isinstance(exc, redis.ResponseError) else ""
        if text.startswith("QUOTA "):
            _, quota, left = text.split()
            return QuotaExceeded(quotas[int(quota) - 1], int(left))
        if text.startswith("IDEMPOTENCY "):
            index = int(text.split()[1])
            return IdempotencyConflict(index - 1 if index else None)
        return translated(exc, "redis cannot take writes now")
