"""Publishing from Python: the one validated path behind every way to publish.

POST /events (Realtime.publish), the app's own code (`chatgenius.realtime(app)`) and
other Python processes (chatgenius.publisher.RedisPublisher) all publish through a
Publisher: the same validation (events.py), the same bus call (EventBus.publish_once),
the same refusals. No HTTP and no Flask here, so the in-process path costs only the
validation and the bus call, and a worker process can import it without Flask.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from .bus.base import BusUnavailable, IdempotencyConflict, Published, Quota, QuotaExceeded
from .errors import ServiceError, bus_unavailable
from .events import Draft, EventError, draft, drafts_from_request, idempotency_key

APP_SCOPE = "app"  # the in-process and standalone publishers' keys; HTTP publishers' are "user:<sub>"


class PublishError(ServiceError):
    """A refused publish, with the `status`, `code` and `message` POST /events would answer.

    Nothing was published. Raised from a Flask view, it becomes that JSON error
    (web/errors.py handles ServiceError).
    """


class Backend(Protocol):
    """What a Publisher publishes through: an EventBus, or bus/redis_publish.PublishScript."""

    def publish_once(
        self, drafts: Sequence[Draft], scope: str, key: str | None = None, quotas: Sequence[Quota] = (),
    ) -> Published:
        """See EventBus.publish_once."""
        ...


def user_scope(user: str) -> str:
    """The idempotency scope of a user's publishes (HTTP or on the user's behalf)."""
    return "user:" + user


def checked_key(raw: str | None) -> str | None:
    """An Idempotency-Key as sent (None: none was), or PublishError 400 `bad_idempotency_key`."""
    if raw is None:
        return None
    try:
        return idempotency_key(raw)
    except EventError as exc:
        raise PublishError(exc.status, exc.code, str(exc)) from None


class Publisher:
    """Validated publishing onto `backend`; see EventBus.publish_once for the idempotency guarantee.

    `limits` are (label, amount, seconds) of RATE_LIMIT_PUBLISH: a publish on behalf
    of a user (`user=`) counts against that user's quota, the same counter as their
    POST /events; the app's own publishes have none. `published` hooks hear the
    drafts each call actually published (telemetry).
    """

    def __init__(
        self,
        backend: Backend,
        max_event_bytes: int,
        limits: Sequence[tuple[str, int, int]] = (),
        scope: str = APP_SCOPE,
        published: list[Callable[[Sequence[Draft]], None]] | None = None,
    ) -> None:
        self.backend = backend
        self.max_event_bytes = max_event_bytes
        self.limits = list(limits)
        self.scope = scope
        self.published = published if published is not None else []

    def publish(
        self, channel: str, type: str, data: Mapping[str, Any] | None = None, *,
        idempotency_key: str | None = None, user: str | None = None,
    ) -> str | None:
        """Publish one event; its id (None for an ephemeral type). Raises PublishError.

        `idempotency_key`: a repeat within IDEMPOTENCY_WINDOW returns the first id and
        publishes nothing; `user`: publish on that user's behalf (their rate limit and
        their key scope).
        """
        raw = {"channel": channel, "type": type, "data": {} if data is None else data}
        return self.send([self._draft(raw)], checked_key(idempotency_key), user=user).ids[0]

    def publish_many(
        self, events: Sequence[Mapping[str, Any]], *, idempotency_key: str | None = None, user: str | None = None,
    ) -> list[str | None]:
        """Publish a batch (`{"channel","type","data"[,"idempotency_key"]}` each) all or nothing; ids in order."""
        return self.send(self.drafts({"events": list(events)}), checked_key(idempotency_key), user=user).ids

    def drafts(self, payload: object) -> list[Draft]:
        """A POST /events body (one event or `{"events": [...]}`) validated, or PublishError."""
        try:
            return drafts_from_request(payload, self.max_event_bytes)
        except EventError as exc:
            raise PublishError(exc.status, exc.code, str(exc)) from None

    def _draft(self, raw: dict[str, Any]) -> Draft:
        try:
            return draft(raw, self.max_event_bytes)
        except EventError as exc:
            raise PublishError(exc.status, exc.code, str(exc)) from None

    def send(
        self, drafts: Sequence[Draft], key: str | None = None, *, user: str | None = None, scope: str | None = None,
    ) -> Published:
        """Publish validated drafts (`key`: already checked) under `scope` (default: the user's, else
        the publisher's own), counted against `user`'s quota when given."""
        if scope is None:
            scope = user_scope(user) if user is not None else self.scope
        quotas = [Quota("events:user:" + user, amount, seconds) for _, amount, seconds in self.limits] if user else []
        try:
            done = self.backend.publish_once(drafts, scope, key, quotas)
        except BusUnavailable as exc:
            raise bus_unavailable(exc, PublishError) from None
        except QuotaExceeded as exc:
            label = self.limits[quotas.index(exc.quota)][0]
            raise PublishError(
                429, "rate_limited", f"rate limit exceeded: {label}",
                headers={"Retry-After": str(exc.retry_after)}, extra={"retry_after": exc.retry_after},
            ) from None
        except IdempotencyConflict as exc:
            extra = {} if exc.index is None else {"index": exc.index}
            raise PublishError(422, "idempotency_conflict", str(exc), extra=extra) from None
        if self.published and not done.replayed:
            fresh = done.fresh(drafts)
            for hook in self.published:
                hook(fresh)
        return done


def answer(done: Published) -> tuple[dict[str, object], int, dict[str, str]]:
    """POST /events' answer (body, status, headers): the ids, 201, and `Idempotent-Replayed: true`
    when the request's key had been seen (the ids are the first answer's; nothing was published)."""
    return {"ids": done.ids}, 201, ({"Idempotent-Replayed": "true"} if done.replayed else {})
